# The CPU kernel library as a CMake package for C++ users:
#   find_package(dlkern CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE dlkern::kernels)
# Included once from the top-level CMakeLists.txt, after dlkern_kernels exists.
#
# scikit-build-core puts everything install()ed into the wheel, so the C++ package is
# only installed by a plain CMake build (the wheel keeps holding the Python modules only).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

if(DEFINED SKBUILD)
  set(_dlkern_install_cpp_default OFF)
else()
  set(_dlkern_install_cpp_default ON)
endif()
option(DLKERN_INSTALL_CPP "Install the C++ kernel library, headers and CMake package (cmake --install)"
       ${_dlkern_install_cpp_default})

# The same name in this tree as for find_package users.
add_library(dlkern::kernels ALIAS dlkern_kernels)
set_target_properties(dlkern_kernels PROPERTIES EXPORT_NAME kernels)
# The build tree's include directories are BUILD_INTERFACE only (CMakeLists.txt); an
# installed consumer sees include/, where the headers sit under dlkern/.
target_include_directories(dlkern_kernels INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

if(NOT DLKERN_INSTALL_CPP)
  return()
endif()

# The public headers: the kernel entry points of every family (csrc/cpu/<family>.h) and
# the common declarations they use (ISA choice, threads, shapes, errors). Dispatch
# tables, per-ISA kernels and binding helpers stay private. They include each other by
# relative paths, so nothing outside this set is needed; dlkern/dlkern.h includes them
# all (the consumer example compiles it, which checks the set is closed).
set(DLKERN_PUBLIC_CPU_HEADERS activation attention bf16 conv cross_entropy f16 gemm norm optim pool rnn
                              rnn_layer softmax)
set(DLKERN_PUBLIC_COMMON_HEADERS cpu_features errors geometry optim_checks runtime)
set(DLKERN_UMBRELLA_INCLUDES "")
foreach(dir cpu common)
  string(TOUPPER "${dir}" _dir)
  set(_files "")
  foreach(name ${DLKERN_PUBLIC_${_dir}_HEADERS})
    list(APPEND _files ${PROJECT_SOURCE_DIR}/csrc/${dir}/${name}.h)
    string(APPEND DLKERN_UMBRELLA_INCLUDES "#include \"${dir}/${name}.h\"\n")
  endforeach()
  install(FILES ${_files} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dlkern/${dir})
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/dlkern.h.in ${PROJECT_BINARY_DIR}/include/dlkern/dlkern.h @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/include/dlkern/dlkern.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dlkern)

set(DLKERN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dlkern)
install(TARGETS dlkern_kernels EXPORT dlkernTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT dlkernTargets NAMESPACE dlkern:: DESTINATION ${DLKERN_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/dlkernConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/dlkernConfig.cmake INSTALL_DESTINATION ${DLKERN_CMAKE_DIR})
# 0.x: a new minor version may change the API, so only the same major.minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dlkernConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dlkernConfig.cmake ${PROJECT_BINARY_DIR}/dlkernConfigVersion.cmake
        DESTINATION ${DLKERN_CMAKE_DIR})
