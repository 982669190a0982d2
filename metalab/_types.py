"""Shared type aliases."""

from __future__ import annotations

import os
from typing import Any, TypeAlias

Jsonable: TypeAlias = bool | int | float | str | list[Any] | dict[str, Any] | None
ParamDict: TypeAlias = dict[str, Any]
PathLike: TypeAlias = str | os.PathLike[str]
