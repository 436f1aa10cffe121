"""Data preparation: loaders per source, test conversion, splits, validation, decontamination, outputs."""

from cocos.data.config import DataConfig
from cocos.data.decontaminate import DecontaminationReport, decontaminate
from cocos.data.io import DataError, dataset_hash, read_split, write_split
from cocos.data.load import load_problems
from cocos.data.prepare import PreparedData, prepare
from cocos.data.validate import ValidationReport, validate

__all__ = [
    "DataConfig",
    "DataError",
    "DecontaminationReport",
    "PreparedData",
    "ValidationReport",
    "dataset_hash",
    "decontaminate",
    "load_problems",
    "prepare",
    "read_split",
    "validate",
    "write_split",
]
