/* import.h: internal entry points of import/ (ONNX -> IR, YOLO head discovery). */
#ifndef OT_IMPORT_H
#define OT_IMPORT_H

#include "../core/plan.h"

/* Find the YOLO detection head and the export form; fills g->head.
 * A graph that is not a YOLO detector is not an error (head.found = 0). */
ot_status ot_yolo_discover(ot_graph *g, ot_error *err);

#endif
