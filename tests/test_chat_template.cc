// Chat templates: the Jinja subset renderer against the real templates models ship.
// The expected strings are what jinja2 produces for these templates as
// transformers' apply_chat_template runs them (trim_blocks=True, lstrip_blocks=True);
// jinja2 is not installed here, so each was derived by reading the template by hand
// and double-checked (the DeepSeek-R1 "Hi there." case is huggingface.js's jinja
// test vector for the same template).
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <sys/wait.h>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "test_util.h"

namespace jevons {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are terse.", ""},
    {"user", "Hi", ""},
    {"assistant", "Hello! How can I help?", ""},
    {"user", "What is 2+2?", ""},
};

// ---- templates (test data, as the models' tokenizer_config.json ship them)

const char* kChatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// HuggingFaceTB/SmolLM2-*-Instruct
const char* kSmolLM2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a "
    "helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + "
    "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
    "}}{% endif %}";

// Qwen/Qwen2.5-*-Instruct
const char* kQwen25 = R"TPL({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)TPL";

// meta-llama/Meta-Llama-3-8B-Instruct
const char* kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + "
    "content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

// meta-llama/Llama-3.2-3B-Instruct (llama.cpp models/templates copy)
const char* kLlama32 = R"TPL({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)TPL";

// deepseek-ai/DeepSeek-R1 (as in huggingface.js's jinja tests)
const char* kDeepseekR1 =
    R"TPL({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and 'tool_calls' in message %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- if message['role'] == 'assistant' and 'tool_calls' not in message %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %})TPL";

// deepseek-ai/DeepSeek-R1-Distill-Qwen-32B (llama.cpp models/templates copy of the HF one)
const char* kDeepseekR1Distill =
    R"TPL({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %})TPL";

// deepseek-ai/DeepSeek-V3
const char* kDeepseekV3 =
    R"TPL({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %})TPL";

const char* kDsBos = "<｜begin▁of▁sentence｜>";
const char* kDsEos = "<｜end▁of▁sentence｜>";

const std::string kChatmlExpected =
    "<|im_start|>system\nYou are terse.<|im_end|>\n"
    "<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n";

TEST(ChatTemplate, ChatML) {
  ChatTemplate t(kChatml);
  EXPECT_EQ(t.render(kConversation, true), kChatmlExpected);
  EXPECT_EQ(t.render({{"user", "Hi", ""}}, false), "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_FALSE(t.opens_thinking());
}

TEST(ChatTemplate, SmolLM2) {
  ChatTemplate t(kSmolLM2);
  EXPECT_EQ(t.render(kConversation, true), kChatmlExpected);
  EXPECT_EQ(t.render({{"user", "Hi", ""}}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Qwen25) {
  ChatTemplate t(kQwen25, "", "<|im_end|>");
  EXPECT_EQ(t.render(kConversation, true), kChatmlExpected);
  EXPECT_EQ(t.render({{"user", "Hi", ""}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_FALSE(t.opens_thinking());
}

TEST(ChatTemplate, Qwen25WithTools) {
  ChatTemplate t(kQwen25);
  const nlohmann::json extra = {{"tools", nlohmann::json::array({{{"type", "function"}, {"function", {{"name", "f"}, {"description", "d \"q\""}}}}})}};
  EXPECT_EQ(t.render({{"user", "Hi", ""}}, true, extra),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\nYou may call one "
            "or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> "
            "XML tags:\n<tools>\n{\"function\": {\"description\": \"d \\\"q\\\"\", \"name\": \"f\"}, \"type\": \"function\"}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML "
            "tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

const std::string kLlama3Body =
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n";

TEST(ChatTemplate, Llama3) {
  ChatTemplate t(kLlama3, "<|begin_of_text|>", "<|eot_id|>");
  EXPECT_EQ(t.render(kConversation, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>" + kLlama3Body);
  // The content is trimmed.
  EXPECT_EQ(t.render({{"user", "  Hi \n", ""}}, false), "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplate, Llama32) {
  ChatTemplate t(kLlama32, "<|begin_of_text|>", "<|eot_id|>");
  const std::string head = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ";
  EXPECT_EQ(t.render(kConversation, true, {{"date_string", "26 Jul 2024"}}),
            head + "26 Jul 2024\n\nYou are terse.<|eot_id|>" + kLlama3Body);
  // Without date_string the template asks strftime_now, as transformers provides it.
  char today[64];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::strftime(today, sizeof today, "%d %b %Y", &tm);
  EXPECT_EQ(t.render(kConversation, true), head + today + "\n\nYou are terse.<|eot_id|>" + kLlama3Body);
  // No system message: an empty one.
  EXPECT_EQ(t.render({{"user", "Hi", ""}}, true, {{"date_string", "1 Jan 2025"}}),
            head + "1 Jan 2025\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, DeepSeekR1) {
  ChatTemplate t(kDeepseekR1, kDsBos, kDsEos);
  EXPECT_EQ(t.render(kConversation, true),
            "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello! How can I help?<｜end▁of▁sentence｜>"
            "<｜User｜>What is 2+2?<｜Assistant｜>");
  // huggingface.js's test vector: the reasoning of earlier turns is dropped.
  EXPECT_EQ(t.render({{"user", "Hi there.", ""}, {"assistant", "<think>The user said \"Hi there.\"</think>Hi!", ""}, {"user", "Tell me a joke.", ""}}, true),
            "<｜begin▁of▁sentence｜><｜User｜>Hi there.<｜Assistant｜>Hi!<｜end▁of▁sentence｜><｜User｜>Tell me a joke.<｜Assistant｜>");
  EXPECT_FALSE(t.opens_thinking());
}

TEST(ChatTemplate, DeepSeekR1DistillQwen) {
  ChatTemplate t(kDeepseekR1Distill, kDsBos, kDsEos);
  EXPECT_EQ(t.render(kConversation, true),
            "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello! How can I help?<｜end▁of▁sentence｜>"
            "<｜User｜>What is 2+2?<｜Assistant｜><think>\n");
  EXPECT_EQ(t.render({{"user", "a", ""}, {"assistant", "x</think>\n\ny", ""}}, false),
            "<｜begin▁of▁sentence｜><｜User｜>a<｜Assistant｜>\n\ny<｜end▁of▁sentence｜>");
  EXPECT_TRUE(t.opens_thinking());
}

TEST(ChatTemplate, DeepSeekV3) {
  ChatTemplate t(kDeepseekV3, kDsBos, kDsEos);
  EXPECT_EQ(t.render(kConversation, true),
            "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello! How can I help?<｜end▁of▁sentence｜>"
            "<｜User｜>What is 2+2?<｜Assistant｜>");
  // Two system messages are joined by a blank line.
  EXPECT_EQ(t.render({{"system", "A", ""}, {"system", "B", ""}, {"user", "u", ""}}, false), "<｜begin▁of▁sentence｜>A\n\nB<｜User｜>u");
}

TEST(ChatTemplate, Builtins) {
  EXPECT_EQ(ChatTemplate(ChatTemplate::builtin("chatml")).render(kConversation, true), kChatmlExpected);
  EXPECT_EQ(ChatTemplate(ChatTemplate::builtin("llama3"), "<|begin_of_text|>").render(kConversation, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>" + kLlama3Body);
  ChatTemplate r1(ChatTemplate::builtin("deepseek-r1"), kDsBos);
  EXPECT_TRUE(r1.opens_thinking());
  EXPECT_EQ(r1.render(kConversation, true),
            "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi<｜Assistant｜>Hello! How can I help?<｜end▁of▁sentence｜>"
            "<｜User｜>What is 2+2?<｜Assistant｜><think>\n");
  EXPECT_THROW(ChatTemplate::builtin("nope"), Error);
}

// ---- the Jinja subset

std::string R(const std::string& src, const nlohmann::json& extra = nlohmann::json::object()) {
  return ChatTemplate(src).render({}, false, extra);
}

std::string error_of(const std::string& src, const nlohmann::json& extra = nlohmann::json::object()) {
  try {
    ChatTemplate(src).render({}, false, extra);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(R("a\n  {% if true %}\n    b\n  {% endif %}\nc"), "a\n    b\nc");  // lstrip_blocks + trim_blocks
  EXPECT_EQ(R("{{ 'x' }}\n\n"), "x\n");  // no trim_blocks after {{ }}; one trailing newline dropped
  EXPECT_EQ(R("{{ 'x' }}\n"), "x");
  EXPECT_EQ(R("a\r\nb"), "a\nb");
  EXPECT_EQ(R("a  {%- if true -%}  b  {%- endif %}"), "ab");
  EXPECT_EQ(R("a  {{- 'b' -}}  \n c"), "abc");
  EXPECT_EQ(R("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(R("x {% if true %}y{% endif %}"), "x y");  // not at the start of a line
  EXPECT_EQ(R("a\n{# comment #}\nb"), "a\nb");
  EXPECT_EQ(R("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
  EXPECT_EQ(R("{% for i in [1, 2] %}\n{{ i }}\n{% endfor %}"), "1\n2\n");
}

TEST(Jinja, Statements) {
  EXPECT_EQ(R("{% if 0 %}a{% elif 1 %}b{% else %}c{% endif %}"), "b");
  EXPECT_EQ(R("{% for x in [1,2,3] %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}"),
            "01TrueFalse3|12FalseFalse3|23FalseTrue3|");
  EXPECT_EQ(R("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in [1,2,3,4] if x is even %}{{ x }}{% endfor %}"), "24");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(R("{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "1");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"), "6");
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");  // loops scope their sets
  EXPECT_EQ(R("{% set x %}a{{ 1 + 1 }}{% endset %}{{ x }}"), "a2");
  EXPECT_EQ(R("{{ 'y' if false else 'n' }}{{ 'z' if false }}"), "n");
}

TEST(Jinja, ExpressionsFiltersTests) {
  EXPECT_EQ(R("{{ '  a ' | trim }}|{{ [1,2] | length }}|{{ nope | default('d') }}|{{ '' | default('e', true) }}|{{ 'ab' | upper }}{{ 'CD' | lower }}"),
            "a|2|d|e|ABcd");
  EXPECT_EQ(R("{{ {'a': [1, 'x', none, true, 1.5]} | tojson }}"), "{\"a\": [1, \"x\", null, true, 1.5]}");
  EXPECT_EQ(R("{{ {'a': [1]} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(R("{{ [3,4] | first }}{{ [3,4] | last }}|{{ ['a','b'] | join(', ') }}|{{ 'aXb' | replace('X','-') }}|{{ 12 | string + 'x' }}"),
            "34|a, b|a-b|12x");
  EXPECT_EQ(R("{{ 1 is defined }}{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ x is not defined }}"),
            "TrueFalseTrueTrueTrueTrue");
  EXPECT_EQ(R("{{ 'b' in 'abc' }}{{ 2 not in [1] }}{{ 'k' in {'k': 1} }}{{ 1 ~ 'a' ~ none }}{{ 1 + 2 * 3 }}{{ 7 // 2 }}{{ 7 % 3 }}{{ 1 / 2 }}"),
            "TrueTrueTrue1aNone7310.5");
  EXPECT_EQ(R("{{ 1 < 2 and 2 <= 2 and not 3 > 4 }}{{ 0 or 'x' }}{{ [1] == [1] }}{{ 1 == 1.0 }}{{ 'a' != 'b' }}"), "TruexTrueTrueTrue");
  EXPECT_EQ(R("{{ 'a</think>b'.split('</think>')[-1] }}|{{ ' x '.strip() }}|{{ 'xxa'.lstrip('x') }}|{{ 'a  b'.split() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('x') }}"),
            "b|x|a|['a', 'b']|TrueFalse");
  EXPECT_EQ(R("{{ 'abcd'[1:3] }}|{{ 'abc'[1:] }}|{{ [1,2,3][::-1] }}|{{ [1,2,3][-1] }}|{{ 'héllo'[1] }}|{{ 'héllo' | length }}"), "bc|bc|[3, 2, 1]|3|é|5");
  EXPECT_EQ(R("{{ m.role }}{{ m['content'] }}{{ m.missing }}|{{ m.get('role') }}{{ m.get('x', 'd') }}", {{"m", {{"role", "u"}, {"content", "c"}}}}),
            "uc|ud");
  EXPECT_EQ(R("{{ [1, 2] + [3] }}{{ none }}{{ true }}{{ 2.0 }}{{ -3 }}{{ 'ab' * 2 }}"), "[1, 2, 3]NoneTrue2.0-3abab");
  // Undefined values: print empty, iterate empty, compare unequal, are falsy.
  EXPECT_EQ(R("[{{ u }}{{ u | trim }}{% for x in u %}x{% endfor %}{{ u == 'a' }}{{ not u }}{{ 'a' in u }}{{ u | length }}]"), "[FalseTrueFalse0]");
  EXPECT_EQ(R("{{ ['a', 'code_interpreter', 'b'] | reject('equalto', 'code_interpreter') | join(', ') }}"), "a, b");
  EXPECT_EQ(R("{{ xs | selectattr('k') | map(attribute='v') | list }}", {{"xs", {{{"k", true}, {"v", 1}}, {{"k", false}, {"v", 2}}}}}), "[1]");
  EXPECT_EQ(R("{{ \"it's\" }}{{ ['it\\'s'] }}"), "it's[\"it's\"]");
}

TEST(Jinja, Errors) {
  std::string e = error_of("hello\n{{ x | frobnicate }}");
  EXPECT_NE(e.find("unknown filter 'frobnicate'"), std::string::npos) << e;
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  e = error_of("ab {{ x ");
  EXPECT_NE(e.find("unterminated"), std::string::npos) << e;
  EXPECT_NE(e.find("line 1, column 4"), std::string::npos) << e;
  e = error_of("{% if x %}never closed");
  EXPECT_NE(e.find("endif"), std::string::npos) << e;
  e = error_of("{% endfor %}");
  EXPECT_NE(e.find("endfor"), std::string::npos) << e;
  e = error_of("{% macro m() %}{% endmacro %}");
  EXPECT_NE(e.find("macro"), std::string::npos) << e;
  e = error_of("{{ raise_exception('Conversation roles must alternate') }}");
  EXPECT_NE(e.find("Conversation roles must alternate"), std::string::npos) << e;
  e = error_of("{{ 'a' + 1 }}");
  EXPECT_NE(e.find("unsupported operand"), std::string::npos) << e;
  e = error_of("{{ x.y }}");
  EXPECT_NE(e.find("'x' is undefined"), std::string::npos) << e;
  e = error_of("{{ 'a' + }}");
  EXPECT_NE(e.find("line 1"), std::string::npos) << e;
  e = error_of("{{ 'abc }}");
  EXPECT_NE(e.find("unterminated"), std::string::npos) << e;
  EXPECT_NE(error_of("{{ x is frobbed }}").find("unknown test"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 }").find("unterminated"), std::string::npos);
  EXPECT_NE(error_of("{% break %}").find("outside a loop"), std::string::npos);
  // Raise inside a real template's branch: Llama 3.2 rejects two tool calls.
  EXPECT_THROW(ChatTemplate(kQwen25).render({}, true), Error);  // messages[0] of an empty list
}

TEST(Jinja, DeepNestingIsAnErrorNotACrash) {
  std::string deep(100000, '(');
  deep = "{{ " + deep + "1" + std::string(100000, ')') + " }}";
  EXPECT_NE(error_of(deep).find("nested too deeply"), std::string::npos);
  std::string ifs;
  for (int k = 0; k < 5000; ++k) ifs += "{% if true %}";
  for (int k = 0; k < 5000; ++k) ifs += "{% endif %}";
  EXPECT_NE(error_of(ifs).find("nested too deeply"), std::string::npos);
  std::string nots;
  for (int k = 0; k < 100000; ++k) nots += "not ";
  EXPECT_NE(error_of("{{ " + nots + "1 }}").find("nested too deeply"), std::string::npos);
  std::string filters = "{{ 'a'";
  for (int k = 0; k < 300; ++k) filters += " | trim";
  EXPECT_EQ(R(filters + " }}"), "a");
  for (int k = 0; k < 20000; ++k) filters += " | trim";
  EXPECT_NE(error_of(filters + " }}").find("too many parts"), std::string::npos);
  // Values nested deeply at run time print without blowing the stack.
  EXPECT_NE(error_of("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}")
                .find("nested too deeply"),
            std::string::npos);
}

// ---- jevons chat end to end

using Result = test::ShellResult;
using test::run_shell;

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST(ChatCli, TwoTurnsFromAPipe) {
  const std::string model = test::shared_dir() + "/golden/qwen2/gguf/model-bf16.gguf";
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "missing " << model;
  const Result r = run_shell("printf 'Hello there\\nTell me more\\n' | timeout 120 " + std::string(JEVONS_CLI_PATH) + " chat -m " + model +
                             " --system 'Be brief.' -n 12 --temp 0 -t 1 -c 512");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count(r.err, "[jevons] reply:"), 2u) << r.err;
  EXPECT_EQ(count(r.err, "[jevons] energy"), 2u) << r.err;  // an energy line per reply
  EXPECT_EQ(count(r.err, "tok/s"), 6u) << r.err;  // prompt and generation rates per reply, and the energy line's
  EXPECT_EQ(count(r.err, "[jevons] session energy"), 1u) << r.err;
  // The second turn reuses the cache: fewer new tokens than the whole conversation.
  const size_t second = r.err.rfind("[jevons] reply:");
  const size_t p = r.err.find("prompt ", second);
  ASSERT_NE(p, std::string::npos);
  size_t n_new = 0, n_total = 0;
  ASSERT_EQ(std::sscanf(r.err.c_str() + p, "prompt %zu new of %zu", &n_new, &n_total), 2) << r.err;
  EXPECT_LT(n_new, n_total) << r.err;
  EXPECT_GE(count(r.out, "\n"), 2u);
}

TEST(ChatCli, ResetAndExit) {
  const std::string model = test::shared_dir() + "/golden/qwen2/gguf/model-bf16.gguf";
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "missing " << model;
  const Result r = run_shell("printf 'One\\n/reset\\nTwo\\n/exit\\nThree\\n' | timeout 120 " + std::string(JEVONS_CLI_PATH) + " chat -m " +
                             model + " -n 4 --temp 0 -t 1 -c 256");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count(r.err, "[jevons] reply:"), 2u) << r.err;
  EXPECT_EQ(count(r.err, "conversation cleared"), 1u) << r.err;
  const Result bad = run_shell("printf 'x\\n' | timeout 60 " + std::string(JEVONS_CLI_PATH) + " chat -m " + model + " --chat-template nope");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("unknown built-in chat template"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace jevons
