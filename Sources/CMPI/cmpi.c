#include "cmpi.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

/* Open MPI's handles are pointers to its predefined objects. */
typedef void *mpi_handle;

static int (*p_init)(int *, char ***);
static int (*p_comm_rank)(mpi_handle, int *);
static int (*p_comm_size)(mpi_handle, int *);
static int (*p_allgather)(const void *, int, mpi_handle, void *, int, mpi_handle, mpi_handle);
static int (*p_allgatherv)(const void *, int, mpi_handle, void *, const int *, const int *, mpi_handle, mpi_handle);
static int (*p_bcast)(void *, int, mpi_handle, int, mpi_handle);
static int (*p_abort)(mpi_handle, int);
static int (*p_finalize)(void);
static mpi_handle comm_world, byte_type;
static int rank_ = 0, size_ = 1;

int cmpi_start(char *err, int err_len) {
    const char *name = getenv("DDSP_PIANO_LIBMPI");
    if (!name || !*name) name = "libmpi.so.40";
    /* RTLD_GLOBAL: Open MPI's own plugins resolve symbols of libmpi. */
    void *lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(err, err_len, "started by an MPI launcher, but %s cannot be loaded (%s); install Open MPI: apt install openmpi-bin", name, dlerror());
        return 1;
    }
#define RESOLVE(var, sym) do { *(void **)&var = dlsym(lib, sym); if (!var) { \
        snprintf(err, err_len, "%s lacks %s: not Open MPI 4", name, sym); return 1; } } while (0)
    RESOLVE(p_init, "MPI_Init");
    RESOLVE(p_comm_rank, "MPI_Comm_rank");
    RESOLVE(p_comm_size, "MPI_Comm_size");
    RESOLVE(p_allgather, "MPI_Allgather");
    RESOLVE(p_allgatherv, "MPI_Allgatherv");
    RESOLVE(p_bcast, "MPI_Bcast");
    RESOLVE(p_abort, "MPI_Abort");
    RESOLVE(p_finalize, "MPI_Finalize");
    RESOLVE(comm_world, "ompi_mpi_comm_world");
    RESOLVE(byte_type, "ompi_mpi_byte");
#undef RESOLVE
    if (p_init(NULL, NULL) != 0) { snprintf(err, err_len, "MPI_Init failed"); return 1; }
    p_comm_rank(comm_world, &rank_);
    p_comm_size(comm_world, &size_);
    return 0;
}

int cmpi_rank(void) { return rank_; }
int cmpi_size(void) { return size_; }

int cmpi_allgather(const void *send, int count, void *recv) {
    return p_allgather(send, count, byte_type, recv, count, byte_type, comm_world);
}

int cmpi_allgatherv(const void *send, int count, void *recv, const int *counts, const int *displs) {
    return p_allgatherv(send, count, byte_type, recv, counts, displs, byte_type, comm_world);
}

int cmpi_broadcast(void *buffer, int count, int root) { return p_bcast(buffer, count, byte_type, root, comm_world); }

void cmpi_abort(int status) {
    if (p_abort) p_abort(comm_world, status);
    exit(status);
}

int cmpi_finish(void) { return p_finalize ? p_finalize() : 0; }
