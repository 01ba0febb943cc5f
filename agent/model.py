"""Choosing the chat model: a configured LangChain model, or the offline scripted one."""

from __future__ import annotations

import logging
from typing import Any

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel

from agent.scripted_model import SCRIPTED_MODEL_NAME, ScriptedChatModel
from agent.settings import AgentSettings

log = logging.getLogger(__name__)


def build_model(settings: AgentSettings) -> tuple[BaseChatModel, str]:
    """The chat model and the name it is reported under in events and results."""
    if not settings.model:
        log.warning(
            "no AGENT_MODEL configured: using the %s model (a fixed plan, not an LLM)",
            SCRIPTED_MODEL_NAME,
        )
        return ScriptedChatModel(token_delay_s=settings.scripted_token_delay_s), SCRIPTED_MODEL_NAME
    options: dict[str, Any] = {
        # Temporal retries the whole attempt; a client retry would replay streamed tokens.
        "max_retries": 0,
        "streaming": True,
    }
    if settings.model.startswith("openai:"):
        options["stream_usage"] = True
        if settings.openai_base_url:
            options["base_url"] = settings.openai_base_url
        if settings.openai_api_key:
            options["api_key"] = settings.openai_api_key
        elif settings.openai_base_url:
            # OpenAI-compatible local servers often need no key, but the client insists on one.
            options["api_key"] = "not-needed"
    model = init_chat_model(settings.model, **options)
    log.info("agent model: %s", settings.model)
    return model, settings.model
