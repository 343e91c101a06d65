#ifndef DDSP_CMPI_H
#define DDSP_CMPI_H

/* Open MPI for ddsp-piano-train's data-parallel ranks, loaded at run time (dlopen of
   libmpi.so.40, Debian 12's Open MPI 4) only when a launcher (mpirun, srun) started the
   process: the trainer and its package do not depend on Open MPI otherwise, and building needs
   no MPI headers. Open MPI's handles are the addresses of its predefined objects
   (MPI_COMM_WORLD is &ompi_mpi_comm_world), which is what this shim resolves; another MPI
   would need another shim.

   Every call returns 0 on success. The communicator is MPI_COMM_WORLD; MPI's default error
   handler (errors are fatal, the launcher stops every rank) stays. */

/* Loads the library (DDSP_PIANO_LIBMPI overrides its name) and initialises MPI.
   On failure returns nonzero and writes one line into err. */
int cmpi_start(char *err, int err_len);
int cmpi_rank(void);
int cmpi_size(void);
/* Every rank sends `count` bytes; recv gets size × count bytes in rank order. */
int cmpi_allgather(const void *send, int count, void *recv);
/* Rank i sends counts[i] bytes; recv gets them at displs[i]. */
int cmpi_allgatherv(const void *send, int count, void *recv, const int *counts, const int *displs);
/* Rank `root`'s `count` bytes reach every rank. */
int cmpi_broadcast(void *buffer, int count, int root);
/* Stops every rank of the job (MPI_Abort) with this exit status. */
void cmpi_abort(int status);
int cmpi_finish(void);

#endif
