/* cmd_synth.h: `onnx-train data synth` (tools/cli/cmd_synth.c). */
#ifndef OT_CMD_SYNTH_H
#define OT_CMD_SYNTH_H

/* argv[0] is "synth"; the options follow. Returns the exit code. */
int cmd_data_synth(int argc, char **argv);

#endif
