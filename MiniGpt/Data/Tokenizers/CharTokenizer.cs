using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt.Data;

/// <summary>
/// Character-level tokenizer: the vocabulary is the sorted set of Unicode characters (scalar values)
/// of the training text, id = rank in that order (as nanoGPT's shakespeare_char). Stored with the
/// checkpoint as JSON {"type":"char","chars":"…"} so eval and sample rebuild the same one.
/// </summary>
public sealed class CharTokenizer : ITokenizer
{
    private readonly Rune[] _chars;
    private readonly byte[][] _bytes;
    private readonly Dictionary<Rune, int> _ids;

    public CharTokenizer(IEnumerable<Rune> chars)
    {
        _chars = chars.Distinct().OrderBy(r => r.Value).ToArray();
        _ids = new Dictionary<Rune, int>(_chars.Length);
        for (int i = 0; i < _chars.Length; i++) _ids[_chars[i]] = i;
        _bytes = _chars.Select(r => Encoding.UTF8.GetBytes(r.ToString())).ToArray();
    }

    public string Name => "char";

    public ReadOnlySpan<byte> TokenBytes(int id) => _bytes[id];

    public static CharTokenizer FromText(string text) => new(text.EnumerateRunes());

    public int VocabSize => _chars.Length;

    public int[] Encode(string text, string source)
    {
        var ids = new List<int>(text.Length);
        int pos = 0;
        foreach (var r in text.EnumerateRunes())
        {
            if (!_ids.TryGetValue(r, out int id))
                throw new UserError($"{source}: character {Show(r)} at offset {pos} is not in the model's vocabulary of {VocabSize} characters: use text made of the training characters");
            ids.Add(id);
            pos++;
        }
        return ids.ToArray();
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder(ids.Length);
        foreach (int id in ids) sb.Append(_chars[id].ToString());
        return sb.ToString();
    }

    public string Decode(int id) => _chars[id].ToString();

    private static string Show(Rune r) => Rune.IsControl(r) ? $"U+{r.Value:X4}" : $"'{r}' (U+{r.Value:X4})";

    public string ToJson()
    {
        var sb = new StringBuilder();
        foreach (var r in _chars) sb.Append(r.ToString());
        return new JsonObject { ["type"] = "char", ["chars"] = sb.ToString() }.ToJsonString();
    }

    public static CharTokenizer FromJson(string json)
    {
        try
        {
            var o = JsonNode.Parse(json) as JsonObject;
            if (o?["type"]?.GetValue<string>() != "char" || o["chars"]?.GetValue<string>() is not { } chars)
                throw new UserError("the checkpoint's tokenizer is not a char tokenizer this version understands");
            return new CharTokenizer(chars.EnumerateRunes());
        }
        catch (JsonException) { throw new UserError("the checkpoint's tokenizer metadata is not valid JSON: the file is damaged"); }
        catch (InvalidOperationException) { throw new UserError("the checkpoint's tokenizer metadata is malformed: the file is damaged"); }
    }
}
