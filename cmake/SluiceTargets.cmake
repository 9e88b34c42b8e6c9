# Helpers shared by every module's CMakeLists.txt.

# sl_module(NAME SOURCES... [DEPS ...] [INTERNAL headers...]) builds one
# static library per module. DEPS are the only modules it may use: layering
# lives here, not in comments. A module may include its own headers and the
# public headers of the modules in its (transitive) DEPS; headers named
# *_int.h, and those listed after INTERNAL, are its own business. The build
# checks this for every module (sl_layering(), scripts/check-layering.py;
# docs/ARCHITECTURE.md "How layering is declared and checked").
function(sl_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS;INTERNAL" ${ARGN})
  add_library(${name} STATIC ${M_SOURCES})
  target_compile_options(${name} PRIVATE ${SL_WARNINGS})
  # Not the repository root: the include farm (cmake/SluiceLayering.cmake)
  # gives the module its own headers and its dependents its public ones, so
  # the compiler refuses a crossing include. DEPS stay PUBLIC because the
  # rule allows a dependent the public headers of the transitive DEPS (a
  # public header includes its own module's DEPS: store.h -> common.h).
  set(farm ${PROJECT_BINARY_DIR}/layers/${name})
  target_include_directories(${name} PRIVATE ${farm}/own INTERFACE ${farm}/pub)
  if(M_DEPS)
    target_link_libraries(${name} PUBLIC ${M_DEPS})
  endif()
  set(internal)
  foreach(h ${M_INTERNAL})
    get_filename_component(h ${h} ABSOLUTE)
    list(APPEND internal ${h})
  endforeach()
  set_property(GLOBAL APPEND PROPERTY SL_LAYER_MODULES ${name})
  set_property(TARGET ${name} PROPERTY SL_LAYER_DEPS "${M_DEPS}")
  set_property(TARGET ${name} PROPERTY SL_LAYER_INTERNAL "${internal}")
  set_property(TARGET ${name} PROPERTY SL_LAYER_SRCDIR
               "${CMAKE_CURRENT_SOURCE_DIR}")
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
include(${CMAKE_CURRENT_LIST_DIR}/SluiceLayering.cmake)
