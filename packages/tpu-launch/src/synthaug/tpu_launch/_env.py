"""Names of the environment variables that describe a multi-process run (no JAX import)."""

ENV_COORDINATOR_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"

#: A directory where a failing process leaves a one-line record (``stamp code kind``) in a
#: file named after its index, so that a launcher can tell the process that failed first from
#: the ones that stopped because of it, whatever order their exits are observed in.
ENV_FAILURE_DIR = "SYNTHAUG_FAILURE_DIR"
