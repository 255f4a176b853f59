"""Search spaces: the library users import.

Public names: :class:`Architecture`, :class:`SearchSpace`, :class:`TabularSpace`,
:func:`get_space`, :func:`list_spaces`, :func:`register_space`, :func:`load_architecture` (a found
architecture back as a ``torch.nn.Module``), :func:`export_architecture`, the parents, the errors.
"""

from ._architecture import Architecture, canonical_json
from ._base import (PROFILED_DEVICES, Choice, ConfigOption, MetricInfo, SearchSpace, Suggest, TabularSpace, is_profiled,
                    metric_key)
from ._data import ENV_VAR as DATA_ENV_VAR, data_dir, data_file
from ._errors import (
    CheckpointError,
    DataNotFoundError,
    ExportError,
    LoadError,
    InvalidArchitectureError,
    InvalidConfigError,
    SpacesError,
    UnknownMetricError,
    UnknownSpaceError,
)
from ._export import export_architecture, load_architecture
from ._parents import (ParentNotTrainedError, TrainedParent, UnknownParentError, import_parent, list_parents,
                       load_parent)
from ._registry import get_space, list_spaces, register_space, space_class
from ._suggest import RandomSuggest

__all__ = [
    "Architecture", "canonical_json", "Choice", "ConfigOption", "MetricInfo", "SearchSpace", "Suggest",
    "TabularSpace", "metric_key", "PROFILED_DEVICES", "is_profiled", "DATA_ENV_VAR", "data_dir", "data_file", "DataNotFoundError",
    "InvalidArchitectureError", "InvalidConfigError", "SpacesError", "UnknownMetricError", "UnknownSpaceError",
    "ExportError", "LoadError", "CheckpointError", "import_parent", "export_architecture", "load_architecture", "ParentNotTrainedError", "TrainedParent",
    "UnknownParentError", "list_parents", "load_parent", "get_space", "list_spaces", "register_space", "space_class", "RandomSuggest",
]
