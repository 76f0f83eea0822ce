using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt.Data;

/// <summary>Tokenizers by name (for --tokenizer) and from checkpoint JSON.</summary>
public static class Tokenizers
{
    public const string Names = "char, bpe:N (N ≥ 257), cl100k_base, o200k_base or gpt2";

    /// <summary>Checks a --tokenizer name before any data is read: a UserError naming the choices otherwise.</summary>
    public static void CheckName(string name)
    {
        if (name == "char" || TiktokenTokens.Encodings.Contains(name)) return;
        if (name.StartsWith("bpe:", StringComparison.Ordinal))
        {
            if (!int.TryParse(name.AsSpan(4), NumberStyles.None, CultureInfo.InvariantCulture, out int n))
                throw new UserError($"--tokenizer {name}: the N of bpe:N must be a whole number, such as bpe:512");
            if (n < BpeTrainer.MinVocab || n > 1 << 20)
                throw new UserError($"--tokenizer {name}: a byte-level BPE needs N in [{BpeTrainer.MinVocab}, {1 << 20}] (the 256 bytes and at least one merge)");
            return;
        }
        throw new UserError($"unknown tokenizer '{name}': use {Names}");
    }

    /// <summary>Builds the named tokenizer for a training text: the char set, a learned BPE, or a compacted tiktoken.</summary>
    public static ITokenizer Create(string name, string trainingText)
    {
        CheckName(name);
        if (name == "char") return CharTokenizer.FromText(trainingText);
        if (name.StartsWith("bpe:", StringComparison.Ordinal)) return BpeTokens.Learn(trainingText, int.Parse(name.AsSpan(4), CultureInfo.InvariantCulture));
        return TiktokenTokens.Learn(name, trainingText);
    }

    public static ITokenizer FromJson(string json)
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new UserError("the tokenizer metadata is not a JSON object: the file is damaged"); }
        catch (JsonException) { throw new UserError("the tokenizer metadata is not valid JSON: the file is damaged"); }
        try
        {
            return o["type"]?.GetValue<string>() switch
            {
                "char" => CharTokenizer.FromJson(json),
                "bpe" => BpeTokens.FromJson(o),
                "tiktoken" => TiktokenTokens.FromJson(o),
                var t => throw new UserError($"the tokenizer type '{t}' is not one this version understands ({Names})"),
            };
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
        {
            throw new UserError("the tokenizer metadata is malformed: the file is damaged");
        }
    }
}
