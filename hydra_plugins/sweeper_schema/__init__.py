"""Registers sweeper's configuration schema (sweeper.config.schema.SweeperConfig) in Hydra's
ConfigStore as `config_schema`, which conf/config.yaml extends. Hydra imports every
hydra_plugins module before it composes a config, so the schema is there however the app
or a test starts Hydra."""

from sweeper.config.schema import register

register()
