# Helpers shared by every module's CMakeLists.txt.

# sl_module(NAME SOURCES... [DEPS ...]) builds one static library per module.
# DEPS are the only modules it may use: layering lives here, not in comments.
function(sl_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${M_SOURCES})
  target_compile_options(${name} PRIVATE ${SL_WARNINGS})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  if(M_DEPS)
    target_link_libraries(${name} PUBLIC ${M_DEPS})
  endif()
endfunction()

# sl_unit_test(NAME SOURCES... LIBS...) adds a cmocka test; ctest runs each
# test executable in its own process.
function(sl_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${SL_WARNINGS})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT}
                       LABELS "unit;${T_LABELS}")
endfunction()

# sl_integration_test(NAME COMMAND... [TIMEOUT s]) adds a test that needs the
# harness's real Kafka and Mosquitto (scripts/harness exports their addresses
# as SLUICE_TEST_KAFKA_BOOTSTRAP and SLUICE_TEST_MQTT_HOST/PORT). Exit code 77
# reports "skipped" to ctest, never "passed".
function(sl_integration_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "COMMAND;LABELS" ${ARGN})
  add_test(NAME ${name} COMMAND ${T_COMMAND})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT}
                       LABELS "integration;${T_LABELS}" SKIP_RETURN_CODE 77)
endfunction()
