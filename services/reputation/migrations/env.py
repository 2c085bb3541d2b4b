from services.common.migrations import run_env
from services.reputation.tables import SCHEMA, metadata

run_env(metadata, SCHEMA)
