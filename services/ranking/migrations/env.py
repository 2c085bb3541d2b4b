from services.common.migrations import run_env
from services.ranking.tables import SCHEMA, metadata

run_env(metadata, SCHEMA)
