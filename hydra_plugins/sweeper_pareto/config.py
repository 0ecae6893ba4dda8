"""Registers the structured config of `hydra/sweeper=pareto` in Hydra's ConfigStore, as the
schema that conf/hydra/sweeper/pareto.yaml extends. The settings themselves live in
sweeper.search.config."""

from hydra.core.config_store import ConfigStore

from sweeper.search.config import ParetoSweeperConf

ConfigStore.instance().store(
    group="hydra/sweeper", name="pareto_schema", node=ParetoSweeperConf, provider="sweeper"
)
