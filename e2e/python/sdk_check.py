"""Drives a modelroute sidecar with the official OpenAI Python SDK.

Usage: python sdk_check.py BASE_URL CASE
Prints one JSON object describing what the SDK saw; the Rust test asserts on it.
"""

import json
import sys

import openai


WEATHER_Q = [{"role": "user", "content": "What's the temperature in London?"}]
# A strict OpenAI tool: $defs/$ref, additionalProperties:false and a nullable type, which
# Gemini's Schema cannot take as they are.
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_current_temperature", "description": "Gets the current temperature.", "strict": True,
    "parameters": {
        "type": "object", "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "properties": {"location": {"type": "string"}, "unit": {"anyOf": [{"$ref": "#/$defs/Unit"}, {"type": "null"}]},
                       "note": {"type": ["string", "null"]}},
        "required": ["location", "unit", "note"],
    }}}
RECIPES = {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
    "recipeName": {"type": "string"}, "ingredients": {"type": "array", "items": {"type": "string"}},
    "rating": {"type": ["integer", "null"]}}, "required": ["recipeName", "ingredients", "rating"]}}


def main() -> None:
    base_url, case = sys.argv[1], sys.argv[2]
    # The app holds no real key: the sidecar injects the provider's. max_retries=0 so
    # the SDK's own retries do not hide what the sidecar answered.
    client = openai.OpenAI(base_url=base_url, api_key="app-placeholder", max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "Say hello"}]
    out: dict = {"case": case}
    try:
        if case == "plain":
            r = client.chat.completions.create(model="m", messages=messages)
            out.update(content=r.choices[0].message.content, finish=r.choices[0].finish_reason,
                       prompt_tokens=r.usage.prompt_tokens, completion_tokens=r.usage.completion_tokens)
        elif case in ("stream", "stream_usage"):
            extra = {"stream_options": {"include_usage": True}} if case == "stream_usage" else {}
            chunks = list(client.chat.completions.create(model="m", messages=messages, stream=True, **extra))
            out.update(
                content="".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                finish=[c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
                usage=[c.usage.completion_tokens for c in chunks if c.usage],
                chunks=len(chunks),
            )
        elif case == "embeddings":
            r = client.embeddings.create(model="m-embed", input=["a", "b"])
            out.update(count=len(r.data), dims=len(r.data[0].embedding))
        elif case == "models":
            out.update(ids=[m.id for m in client.models.list()])
        elif case == "unknown_model":
            client.chat.completions.create(model="no-such-model", messages=messages)
        elif case in ("upstream_down", "stream_broken"):
            stream = case == "stream_broken"
            r = client.chat.completions.create(model="m", messages=messages, stream=stream)
            if stream:
                got = []
                for c in r:
                    got.append(c.choices[0].delta.content or "" if c.choices else "")
                out.update(content="".join(got))
        elif case.startswith("anthropic_"):
            out.update(anthropic_case(client, case))
        elif case == "tools":
            r = client.chat.completions.create(model="m", messages=WEATHER_Q, tools=[WEATHER_TOOL],
                                               tool_choice="auto")
            m = r.choices[0].message
            out.update(finish=r.choices[0].finish_reason, content=m.content,
                       tool_calls=[{"id": c.id, "name": c.function.name,
                                    "arguments": json.loads(c.function.arguments)} for c in m.tool_calls or []],
                       prompt_tokens=r.usage.prompt_tokens, completion_tokens=r.usage.completion_tokens)
        elif case == "stream_tools":
            calls: dict = {}
            finish = []
            for c in client.chat.completions.create(model="m", messages=WEATHER_Q, tools=[WEATHER_TOOL],
                                                    stream=True):
                if not c.choices:
                    continue
                for d in c.choices[0].delta.tool_calls or []:
                    slot = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                    slot["id"] = d.id or slot["id"]
                    if d.function:
                        slot["name"] += d.function.name or ""
                        slot["arguments"] += d.function.arguments or ""
                if c.choices[0].finish_reason:
                    finish.append(c.choices[0].finish_reason)
            out.update(finish=finish, tool_calls=[
                {"index": i, "id": v["id"], "name": v["name"], "arguments": json.loads(v["arguments"])}
                for i, v in sorted(calls.items())])
        elif case == "image":
            r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is in these pictures?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/images/cat.png"}},
            ]}])
            out.update(content=r.choices[0].message.content, finish=r.choices[0].finish_reason)
        elif case == "json_mode":
            r = client.chat.completions.create(model="m", messages=messages, response_format={
                "type": "json_schema", "json_schema": {"name": "recipes", "strict": True, "schema": RECIPES}})
            out.update(parsed=json.loads(r.choices[0].message.content), finish=r.choices[0].finish_reason)
        elif case == "azure_plain":
            r = client.chat.completions.create(model="m", messages=messages)
            d = r.to_dict()
            out.update(content=r.choices[0].message.content, finish=r.choices[0].finish_reason,
                       prompt_filter_results=d.get("prompt_filter_results"),
                       content_filter_results=d["choices"][0].get("content_filter_results"),
                       prompt_tokens=r.usage.prompt_tokens)
        elif case == "azure_stream":
            chunks = list(client.chat.completions.create(model="m", messages=messages, stream=True,
                                                         stream_options={"include_usage": True}))
            out.update(
                content="".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                finish=[c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
                empty_choice_chunks=sum(1 for c in chunks if not c.choices),
                prompt_filter_results=[c.to_dict()["prompt_filter_results"] for c in chunks
                                       if "prompt_filter_results" in c.to_dict()],
                usage=[c.usage.completion_tokens for c in chunks if c.usage],
            )
        else:
            raise SystemExit(f"unknown case {case}")
    except openai.APIStatusError as e:
        out.update(error=type(e).__name__, status=e.status_code, message=e.message,
                   code=(e.body or {}).get("code") if isinstance(e.body, dict) else None)
    except openai.APIError as e:
        out.update(error=type(e).__name__, message=e.message)
    print(json.dumps(out))


ANTHROPIC_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def anthropic_case(client: openai.OpenAI, case: str) -> dict:
    """Cases run against a route whose target is an Anthropic provider (the sidecar translates)."""
    ask = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    if case == "anthropic_tools":
        r = client.chat.completions.create(model="m", messages=ask, tools=[ANTHROPIC_WEATHER_TOOL])
        m = r.choices[0].message
        calls = [[c.id, c.function.name, json.loads(c.function.arguments)] for c in m.tool_calls or []]
        return dict(content=m.content, finish=r.choices[0].finish_reason, calls=calls,
                    prompt_tokens=r.usage.prompt_tokens)
    if case == "anthropic_stream_tools":
        chunks = list(client.chat.completions.create(
            model="m", messages=ask, tools=[ANTHROPIC_WEATHER_TOOL], stream=True,
            stream_options={"include_usage": True}))
        # Accumulate tool calls by index, the way SDK users do.
        acc: dict = {}
        for c in chunks:
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                slot = acc.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
        calls = [[v["id"], v["name"], json.loads(v["arguments"])] for _, v in sorted(acc.items())]
        return dict(
            calls=calls,
            content="".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
            finish=[c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
            usage=[c.usage.completion_tokens for c in chunks if c.usage],
        )
    if case == "anthropic_image":
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        ]}])
        return dict(content=r.choices[0].message.content, finish=r.choices[0].finish_reason)
    if case == "anthropic_json":
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Paris as JSON"}],
                                           response_format={"type": "json_object"})
        m = r.choices[0].message
        return dict(finish=r.choices[0].finish_reason, parsed=json.loads(m.content),
                    tool_calls=len(m.tool_calls or []))
    raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main()
