"""KFuncDB: the datamancy.stack tool host. LLM agents call tools through it; a capability policy limits what
those tools may touch on the host."""

__version__ = "0.1.0"
