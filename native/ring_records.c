/* ring_records.c: a ring's one-record push and pop as CPython methods.
 *
 * Why not cffi, as for the rest of the native core: a record moved one at a time is the
 * case where the call itself is the cost. Through cffi every call releases and re-takes
 * the GIL and converts its arguments (about a sixth of a push + pop's instructions), and
 * Ring.push/pop add a Python frame around it. ts_ring_push/ts_ring_pop never block (a
 * wake of a parked peer is one non-blocking futex call), so these methods keep the GIL
 * and are bound straight onto the Ring: a Python loop calls C with nothing in between.
 *
 * Safety: a RecordPort holds a buffer export of the segment's mapping, so the mapping
 * cannot be unmapped while the port can reach it; Ring.close() calls release() first,
 * after which every call raises ValueError instead of touching freed memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ring.h"

typedef struct {
    PyObject_HEAD
    ts_ring *ring;      /* NULL once released */
    Py_buffer mapping;  /* held while ring is set */
    Py_ssize_t slot_size;
    PyObject *name;     /* for messages */
} RecordPort;

static void port_release_mapping(RecordPort *self) {
    if (self->ring) {
        self->ring = NULL;
        PyBuffer_Release(&self->mapping);
    }
}

static int port_init(RecordPort *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"mapping", "slot_size", "name", NULL};
    PyObject *mapping, *name;
    Py_ssize_t slot_size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnU", kwlist, &mapping, &slot_size, &name))
        return -1;
    port_release_mapping(self);
    if (PyObject_GetBuffer(mapping, &self->mapping, PyBUF_WRITABLE) < 0) return -1;
    ts_ring_info info;
    int status = TS_RING_ERR_TOO_SMALL;
    if ((size_t)self->mapping.len >= TS_RING_HEADER_SIZE) {
        ts_ring_read_info(self->mapping.buf, &info);
        status = slot_size <= 0 || (uint64_t)slot_size != info.slot_size
                     ? TS_RING_ERR_SLOT_SIZE
                     : ts_ring_check(self->mapping.buf, (size_t)self->mapping.len,
                                     info.layout_version, (uint32_t)slot_size, 0);
    }
    if (status != TS_RING_OK) { /* Ring.attach has told the cause in words already */
        PyBuffer_Release(&self->mapping);
        PyErr_Format(PyExc_ValueError, "ring %U: not a ring of %zd-byte slots (status %d)",
                     name, slot_size, status);
        return -1;
    }
    self->ring = (ts_ring *)self->mapping.buf;
    self->slot_size = slot_size;
    Py_INCREF(name);
    Py_XSETREF(self->name, name);
    return 0;
}

static void port_dealloc(RecordPort *self) {
    port_release_mapping(self);
    Py_XDECREF(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *closed_error(RecordPort *self) {
    PyErr_Format(PyExc_ValueError, "ring %S is closed", self->name ? self->name : Py_None);
    return NULL;
}

static PyObject *port_push(RecordPort *self, PyObject *record) {
    if (!self->ring) return closed_error(self);
    Py_ssize_t len;
    int pushed = 0;
    if (PyBytes_CheckExact(record)) { /* the common case: no buffer export to take */
        len = PyBytes_GET_SIZE(record);
        if (len != self->slot_size) goto wrong_size;
        pushed = ts_ring_push_one(self->ring, PyBytes_AS_STRING(record));
    } else {
        Py_buffer b;
        if (PyObject_GetBuffer(record, &b, PyBUF_SIMPLE) < 0) return NULL;
        len = b.len;
        if (len == self->slot_size) pushed = ts_ring_push_one(self->ring, b.buf);
        PyBuffer_Release(&b);
        if (len != self->slot_size) goto wrong_size;
    }
    return PyBool_FromLong(pushed == 1);
wrong_size:
    PyErr_Format(PyExc_ValueError, "ring %U: record is %zd bytes, slots are %zd", self->name,
                 len, self->slot_size);
    return NULL;
}

static PyObject *port_pop(RecordPort *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->ring) return closed_error(self);
    if (!ts_ring_readable(self->ring)) Py_RETURN_NONE; /* no bytes object made to spin on */
    PyObject *out = PyBytes_FromStringAndSize(NULL, self->slot_size);
    if (!out) return NULL;
    if (ts_ring_pop_one(self->ring, PyBytes_AS_STRING(out)) != 1) { /* not reached: SPSC */
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

static PyObject *port_release(RecordPort *self, PyObject *Py_UNUSED(ignored)) {
    port_release_mapping(self);
    Py_RETURN_NONE;
}

static PyMethodDef port_methods[] = {
    {"push", (PyCFunction)port_push, METH_O,
     "push(record) -> bool: publish one record of exactly slot_size bytes; False when full."},
    {"pop", (PyCFunction)port_pop, METH_NOARGS,
     "pop() -> bytes | None: take one record, or None when the ring is empty."},
    {"release", (PyCFunction)port_release, METH_NOARGS,
     "release(): let go of the mapping; later calls raise ValueError. Idempotent."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RecordPortType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tradsys._ring_records.RecordPort",
    .tp_basicsize = sizeof(RecordPort),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RecordPort(mapping, slot_size, name): one-record push and pop on the ring at "
              "the start of a writable mapping.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)port_init,
    .tp_dealloc = (destructor)port_dealloc,
    .tp_methods = port_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tradsys._ring_records",
    .m_doc = "A ring's one-record push and pop, called from Python without cffi.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__ring_records(void) {
    if (PyType_Ready(&RecordPortType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&RecordPortType);
    if (PyModule_AddObject(m, "RecordPort", (PyObject *)&RecordPortType) < 0) {
        Py_DECREF(&RecordPortType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
