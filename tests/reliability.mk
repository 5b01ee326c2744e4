# reliability tests (bad inputs, fuzz smoke)
#
# test_safetensors: the strict safetensors reader and the atomic writer
#   (round trip; every malformed file built in memory).
# test_bad_inputs: the bad input catalogue through adadelta-replay (exit
#   status, one-line message naming the file or key, --out neither created
#   nor changed) and the numerical faults through the C API. The catalogue
#   is a table in the file, one line a row; its hostile files are generated
#   into the harness's mkdtemp folder, so tests/data holds none.
# test_threads_independent: two optimizers stepped from two pthreads at
#   once give the bytes of two runs one after the other.
# The fuzzing harnesses and their corpus smoke run: tests/fuzz/Makefile.am.
check_PROGRAMS += test_safetensors test_bad_inputs test_threads_independent
test_safetensors_SOURCES = test_safetensors.c $(HARNESS)
test_bad_inputs_SOURCES = test_bad_inputs.c $(HARNESS)
test_threads_independent_SOURCES = test_threads_independent.c $(HARNESS)
test_threads_independent_LDADD = $(LDADD) -lpthread
