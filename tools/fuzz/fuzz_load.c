/* fuzz_load.c: libFuzzer target for the ONNX loader: bytes -> protobuf ->
 * IR -> validation plan (shape inference and constant folding) -> YOLO head
 * discovery. Built with -fsanitize=fuzzer,address,undefined (docs/FUZZING.md).
 * Any crash, leak, sanitizer report or timeout is a finding; every finding
 * becomes a regression test in tests/fixtures/fuzz/. */
#include "onnxtrain.h"
#include <stdint.h>
#include <stddef.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ot_model *m = NULL;
    ot_error e;
    /* no folder: external data must be refused cleanly */
    if (ot_model_load_buffer(data, size, NULL, "fuzz.onnx", &m, &e) == OT_OK) ot_model_destroy(m);
    return 0;
}
