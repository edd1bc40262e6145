"""LLM helper tools (chat and embeddings through LiteLLM). They touch nothing on the host, so they need no
capability; they are registered only when KFUNCDB_LITELLM_URL is set."""
from __future__ import annotations

from ..registry import Plugin, ToolSpec
from ._http import bearer, read_key, request


class LiteLLMClient:
    def __init__(self, env: dict):
        self.url = env.get("KFUNCDB_LITELLM_URL", "").rstrip("/")
        self.key = read_key(env, "KFUNCDB_LITELLM_KEY_FILE")

    @property
    def configured(self) -> bool:
        return self.url.startswith(("http://", "https://"))

    def post(self, path: str, body: dict, deadline: float):
        return request("POST", f"{self.url}{path}", deadline, body=body, headers=bearer(self.key))


class LlmPlugin(Plugin):
    id = "llm"
    description = "Chat and embeddings through LiteLLM"
    capabilities = frozenset()

    def specs(self):
        return [
            ToolSpec("llm_chat", "Ask a language model a question and return its answer.", {
                "type": "object",
                "properties": {"prompt": {"type": "string", "minLength": 1, "maxLength": 32000},
                               "model": {"type": "string", "maxLength": 200}},
                "required": ["prompt"], "additionalProperties": False}),
            ToolSpec("llm_embed", "Embed a text; returns the vector's dimension and values.", {
                "type": "object",
                "properties": {"input": {"type": "string", "minLength": 1, "maxLength": 32000},
                               "model": {"type": "string", "maxLength": 200}},
                "required": ["input"], "additionalProperties": False}),
        ]

    def activate(self, env):
        client = LiteLLMClient(env)
        chat_model = env.get("KFUNCDB_CHAT_MODEL", "")
        embed_model = env.get("KFUNCDB_EMBED_MODEL", "")

        def chat(args, deadline):
            answer = client.post("/v1/chat/completions", {
                "model": args.get("model") or chat_model,
                "messages": [{"role": "user", "content": args["prompt"]}]}, deadline)
            return {"answer": answer["choices"][0]["message"].get("content", "")}

        def embed(args, deadline):
            data = client.post("/v1/embeddings", {"model": args.get("model") or embed_model,
                                                  "input": args["input"]}, deadline)
            vector = data["data"][0]["embedding"]
            return {"dimension": len(vector), "embedding": vector}

        return {"llm_chat": chat, "llm_embed": embed}
