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

# sl_daemon_test(NAME SOURCES... [LIBS ...] [PREFIX p] [ARGS ...] [TIMEOUT s]
# [LABELS ...] [INTEGRATION]) builds a test program that starts the real
# daemon through tests/common/daemon_fixture.h; its scenarios are added with
# sl_daemon_scenario(). PREFIX names the tests (default: NAME), ARGS go
# between the sluice binary and the scenario, INTEGRATION marks programs
# whose scenarios need the harness's brokers.
function(sl_daemon_test name)
  cmake_parse_arguments(T "INTEGRATION" "PREFIX;TIMEOUT"
                        "SOURCES;LIBS;ARGS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${SL_WARNINGS})
  target_link_libraries(${name} PRIVATE sl_daemon_fixture ${T_LIBS})
  if(NOT T_PREFIX)
    set(T_PREFIX ${name})
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  set_target_properties(${name} PROPERTIES SL_PREFIX "${T_PREFIX}"
                        SL_TIMEOUT "${T_TIMEOUT}" SL_ARGS "${T_ARGS}"
                        SL_LABELS "${T_LABELS}"
                        SL_INTEGRATION "${T_INTEGRATION}")
endfunction()

# sl_daemon_scenario(PROGRAM SCENARIO [TIMEOUT s] [NAME n] [LABELS ...]) adds
# one ctest, PREFIX_SCENARIO (or NAME), running `PROGRAM SLUICE ARGS...
# SCENARIO` (the program dispatches on its last argument: SL_SCENARIO in the
# source). Label "daemon" (no broker needed) or, for an INTEGRATION program,
# "integration"; exit code 77 is "skipped".
function(sl_daemon_scenario prog scenario)
  cmake_parse_arguments(S "" "TIMEOUT;NAME" "LABELS" ${ARGN})
  get_target_property(prefix ${prog} SL_PREFIX)
  get_target_property(args ${prog} SL_ARGS)
  get_target_property(labels ${prog} SL_LABELS)
  get_target_property(integration ${prog} SL_INTEGRATION)
  if(NOT S_TIMEOUT)
    get_target_property(S_TIMEOUT ${prog} SL_TIMEOUT)
  endif()
  set(kind daemon)
  if(integration)
    set(kind integration)
  endif()
  if(NOT S_NAME)
    set(S_NAME ${prefix}_${scenario})
  endif()
  add_test(NAME ${S_NAME}
           COMMAND ${prog} $<TARGET_FILE:sluice> ${args} ${scenario})
  set_tests_properties(${S_NAME} PROPERTIES TIMEOUT ${S_TIMEOUT}
                       LABELS "${kind};${labels};${S_LABELS}"
                       SKIP_RETURN_CODE 77)
endfunction()

include(${CMAKE_CURRENT_LIST_DIR}/SluiceLayering.cmake)
