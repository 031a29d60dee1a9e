"""The part of the OpenAI Responses API that `mtpb serve` answers (/v1/responses), as evaluation
clients such as inspect-ai call it: input as a string or messages, instructions, max_output_tokens,
temperature, top_p, seed; the reply's output text and usage. It is chat underneath (serve.py)."""
from __future__ import annotations

import secrets
import time

from mtpb.serve_batcher import Output
from mtpb.serve_http import ApiError


def responses_messages(body: dict) -> list[dict]:
    """/v1/responses input (a string, or a list of messages) and instructions as chat messages."""
    messages = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise ApiError(400, "instructions must be a string", "instructions")
        messages.append({"role": "system", "content": instructions})
    given = body.get("input")
    if isinstance(given, str):
        return messages + [{"role": "user", "content": given}]
    if not isinstance(given, list) or not given:
        raise ApiError(400, "input must be a string or a non-empty list of messages", "input")
    for i, item in enumerate(given):
        if not isinstance(item, dict) or item.get("type", "message") != "message" or "role" not in item:
            raise ApiError(400, f"input[{i}] must be a message ({{role, content}}): other items are not supported",
                           "input")
        content = item.get("content")
        if isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, dict)
                     and p.get("type") in ("input_text", "output_text", "text")]
            if len(texts) != len(content) or not all(isinstance(t, str) for t in texts):
                raise ApiError(400, f"input[{i}].content must be a string or a list of text parts", "input")
            content = "".join(texts)
        messages.append({"role": item["role"], "content": content})
    return messages


def responses_sampling(body: dict) -> dict:
    """A /v1/responses body as the chat fields parse_sampling reads (what it ignores is harmless)."""
    if body.get("tools"):
        raise ApiError(400, "tools are not supported by mtpb serve", "tools")
    if body.get("previous_response_id") is not None:
        raise ApiError(400, "previous_response_id is not supported: send the whole conversation as input",
                       "previous_response_id")
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if fmt not in (None, {"type": "text"}):
        raise ApiError(400, "text.format must be text", "text")
    if body.get("stream"):
        raise ApiError(400, "stream is not supported on /v1/responses (use /v1/chat/completions to stream)",
                       "stream")
    return {"max_tokens": body.get("max_output_tokens"), "temperature": body.get("temperature"),
            "top_p": body.get("top_p"), "seed": body.get("seed")}


def response_object(name: str, o: Output, text: str, body: dict, max_tokens: int, temperature: float,
                    top_p: float) -> dict:
    """The Responses API's reply for one finished sequence whose reply text is `text`."""
    cut = o.finish_reason == "length"
    return {"id": f"resp_{secrets.token_hex(12)}", "object": "response", "created_at": int(time.time()),
            "status": "incomplete" if cut else "completed", "model": name, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "instructions": body.get("instructions"), "max_output_tokens": max_tokens, "metadata": {},
            "output": [{"type": "message", "id": f"msg_{secrets.token_hex(12)}", "role": "assistant",
                        "status": "incomplete" if cut else "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "output_text": text, "parallel_tool_calls": False, "temperature": temperature,
            "tool_choice": "none", "tools": [], "top_p": top_p, "truncation": "disabled",
            "text": {"format": {"type": "text"}},
            "usage": {"input_tokens": o.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": o.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": o.prompt_tokens + o.completion_tokens}}
