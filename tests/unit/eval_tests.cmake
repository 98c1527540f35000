# Unit tests of tools/clusterkv_eval's library: the .npy reader/writer and the synthetic data.
if(TARGET clusterkv_eval_lib)
  clusterkv_test(npy_test unit npy_test.cc LIBS clusterkv_eval_lib)
  clusterkv_test(synthetic_test unit synthetic_test.cc LIBS clusterkv_eval_lib)
  clusterkv_test(calibration_plot_test unit calibration_plot_test.cc
    LIBS clusterkv_eval_lib ZLIB::ZLIB)
endif()
