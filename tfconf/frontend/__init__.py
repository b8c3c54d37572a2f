"""The YAML front end: loading configs (positions, ``base:`` composition, ``--set`` overrides), located
errors, the pydantic base of all config models, and the ``solver:`` schema.

Typical use::

    from tfconf.frontend import ConfigError, load_config, validate_section, SolverConfig

    loaded = load_config("lenet.yaml", overrides=["solver.base_lr=1e-3"])
    solver = validate_section(SolverConfig, loaded, ("solver",))   # raises a located ConfigError

Importing this package loads PyYAML and pydantic; ``import tfconf`` does not import it.
"""

from .errors import (  # noqa: F401
    MISSING, ConfigError, ConfigIssue, Location, did_you_mean, format_path, format_value, from_pydantic,
    suggest,
)
from .loader import (  # noqa: F401
    Dumper, LoadedConfig, Loader, SourceMap, dump_yaml, load_config, load_config_string, parse_override,
)
from .model_lookup import model_at, model_by_name  # noqa: F401
from .schema_base import (  # noqa: F401
    FiniteFloat, IntPair, Name, NonNegFloat, NonNegInt, NonNegIntPair, PositiveFloat, PositiveInt,
    PositiveIntPair, Probability, StrictModel, located, located_errors, validate_section,
)
from .solver_schema import LR_POLICIES, SOLVER_TYPES, LrPolicy, SolverConfig, Warmup, learning_rate  # noqa: F401
