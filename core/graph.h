/* graph.h: the graph IR every part of onnx-train works on.
 *
 * Values (tensors) are named and numbered; nodes refer to them by id. The IR
 * owns all its memory and holds no protobuf types: import/ converts a
 * ModelProto into it and export/ builds a fresh one from it. Nodes are kept in
 * topological order. Shapes here are the declared ones (dims may be unknown,
 * -1); concrete shapes per input size live in a plan (core/plan.h). */
#ifndef OT_GRAPH_H
#define OT_GRAPH_H

#include "tensor.h"

/* ONNX AttributeProto.AttributeType numbers. */
typedef enum ot_attr_type {
    OT_ATTR_UNDEF = 0, OT_ATTR_FLOAT = 1, OT_ATTR_INT = 2, OT_ATTR_STRING = 3,
    OT_ATTR_TENSOR = 4, OT_ATTR_GRAPH = 5, OT_ATTR_FLOATS = 6, OT_ATTR_INTS = 7,
    OT_ATTR_STRINGS = 8
} ot_attr_type;

/* An owned host tensor (initializers, Constant values, folded constants). */
typedef struct ot_const {
    ot_dtype dtype;
    ot_shape shape;
    void *data;
    size_t nbytes;
} ot_const;

typedef struct ot_attr {
    char *name;
    ot_attr_type type;
    int64_t i;
    float f;
    char *s;            /* STRING (NUL-terminated copy) */
    int64_t n;          /* count for INTS / FLOATS / STRINGS */
    int64_t *ints;
    float *floats;
    char **strings;
    ot_const *t;        /* TENSOR */
    bool used;          /* read by an op: others get an "ignored attribute" warning */
} ot_attr;

enum {
    OT_V_INPUT = 1u,     /* a graph input fed by the user */
    OT_V_OUTPUT = 2u,    /* a graph output */
    OT_V_INIT = 4u,      /* an initializer: data is set */
};

typedef struct ot_value {
    char *name;
    ot_dtype dtype;          /* OT_UNDEF until known */
    ot_dtype file_dtype;     /* dtype in the file (float16 data is widened to float32) */
    ot_shape shape;          /* declared; rank -1 when unknown */
    char *dim_param[OT_MAX_RANK]; /* symbolic dim names of graph inputs/outputs */
    ot_const init;           /* initializer data when flags & OT_V_INIT */
    int producer;            /* node id, -1 for graph inputs and initializers */
    unsigned flags;
} ot_value;

typedef struct ot_node {
    char *name;
    char *op_type;
    char *domain;
    int op;                  /* index in the op table (kernels/ops.h) */
    int n_in, n_out;
    int *in;                 /* value ids; -1 for an omitted optional input */
    int *out;                /* value ids; -1 for an omitted optional output */
    int n_attr;
    ot_attr *attr;
} ot_node;

typedef struct ot_meta { char *key, *value; } ot_meta;

struct ot_model {
    char *path;              /* as given by the user, for messages */
    char *dir;               /* folder of the model, for external data */
    int64_t ir_version, opset;
    char *producer_name, *producer_version, *graph_name;

    ot_value *values; int n_values, cap_values;
    ot_node *nodes;   int n_nodes, cap_nodes;
    int *inputs;      int n_inputs;   /* non-initializer graph inputs */
    int *outputs;     int n_outputs;
    ot_meta *meta;    int n_meta;

    /* name -> value id (open addressing) */
    int *hash; int hash_cap;

    ot_yolo_head head;
    char *head_conv_names[OT_MAX_HEADS];
};
typedef struct ot_model ot_graph;

ot_graph *ot_graph_create(void);
void ot_graph_destroy(ot_graph *g);
/* Value id for name, creating it if absent; -1 on allocation failure. */
int ot_graph_value(ot_graph *g, const char *name);
int ot_graph_find(const ot_graph *g, const char *name);  /* -1 if absent */
ot_node *ot_graph_add_node(ot_graph *g);                  /* zeroed; NULL on failure */
const char *ot_graph_meta(const ot_graph *g, const char *key);

/* ---- building graphs (train/prepare.c, export/) ---- */
/* Copy node n of src into dst: same op, name and attributes (deep copy); its
 * inputs and outputs are looked up or created in dst by name, with their
 * declared dtype/shape and initializer data copied when created. NULL on OOM. */
ot_node *ot_graph_copy_node(ot_graph *dst, const ot_graph *src, const ot_node *n);
/* The same with the inputs and outputs given as value ids of dst. */
ot_node *ot_graph_copy_node_io(ot_graph *dst, const ot_node *n, int n_in, const int *in, int n_out, const int *out);
/* Value id of a new initializer holding a copy of c; -1 on OOM or name clash. */
int ot_graph_add_init(ot_graph *dst, const char *name, const ot_const *c);
/* Value id of name in dst, copying its declaration (and data) from src. */
int ot_graph_import_value(ot_graph *dst, const ot_graph *src, const char *name);
/* Set a node's input/output lists (value ids, copied). false on OOM. */
bool ot_node_set_io(ot_node *n, int n_in, const int *in, int n_out, const int *out);

/* Check every input is produced, sort nodes topologically (error on cycles),
 * fill producers. */
ot_status ot_graph_finalize(ot_graph *g, ot_error *err);

/* "model.onnx: node 'name' (Op): " for messages. */
const char *ot_node_label(const ot_graph *g, const ot_node *n, char *buf, size_t len);

/* ---- typed attribute getters, with defaults ---- */
const ot_attr *ot_attr_find(const ot_node *n, const char *name);
int64_t ot_attr_int(const ot_node *n, const char *name, int64_t def);
float ot_attr_float(const ot_node *n, const char *name, float def);
const char *ot_attr_string(const ot_node *n, const char *name, const char *def);
/* Count of an INTS attribute and its values; -1 when absent. */
int64_t ot_attr_ints(const ot_node *n, const char *name, const int64_t **v);
int64_t ot_attr_floats(const ot_node *n, const char *name, const float **v);

void ot_const_free(ot_const *c);
/* Copy src into dst (owned). */
ot_status ot_const_copy(ot_const *dst, const ot_const *src, ot_error *err);

#endif
