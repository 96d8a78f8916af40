# An installable package: out-of-tree code (a scheduling policy, a study's driver) does
#   find_package(npusim REQUIRED)
#   target_link_libraries(my_tool PRIVATE npusim::sim npusim::systemc_entry)
# and includes "npu_model/...", "workloads/...", "traces/...", "sim/..." as in the tree.
include(CMakePackageConfigHelpers)

# Installed names match the in-tree aliases: npusim::npu_model, npusim::sim, ...
foreach(name npu_model workloads traces scheduler sim systemc systemc_entry)
  set_target_properties(npusim_${name} PROPERTIES EXPORT_NAME ${name})
endforeach()

install(TARGETS npusim_npu_model npusim_workloads npusim_traces npusim_scheduler npusim_sim
                npusim_systemc npusim_systemc_entry
        EXPORT npusimTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS npusim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(folder npu_model workloads traces scheduler sim)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${folder}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/npusim/${folder}
          FILES_MATCHING PATTERN "*.hpp")
endforeach()
install(EXPORT npusimTargets NAMESPACE npusim:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/npusim)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/npusimConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/npusimConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/npusim)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/npusimConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/npusimConfig.cmake ${PROJECT_BINARY_DIR}/npusimConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/npusim)
