using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace MiniGpt.Data;

/// <summary>
/// A byte-level BPE vocabulary learned here (<see cref="BpeTrainer"/>) and run through
/// Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/> in byte-level mode, which does the encoding
/// (split, bytes, merges by rank) and decoding. Stored as GPT-2's two files: vocab.json
/// {spelling: id} and merges.txt ("#version: 0.2" then one "left right" pair per line, in rank order),
/// spelled with <see cref="ByteLevel"/>; the checkpoint holds the merges, from which the vocab follows.
/// </summary>
public sealed class BpeTokens : ITokenizer
{
    private readonly List<(int Left, int Right)> _merges;
    private readonly byte[][] _bytes;
    private readonly BpeTokenizer _bpe;

    public BpeTokens(List<(int Left, int Right)> merges, int requested)
    {
        _merges = merges;
        Requested = requested;
        _bytes = new byte[256 + merges.Count][];
        for (int b = 0; b < 256; b++) _bytes[b] = [(byte)b];
        for (int k = 0; k < merges.Count; k++)
        {
            var (l, r) = merges[k];
            if (l < 0 || r < 0 || l >= 256 + k || r >= 256 + k)
                throw new UserError($"BPE merge {k} refers to token {Math.Max(l, r)} that does not exist yet: the tokenizer data is damaged");
            _bytes[256 + k] = [.. _bytes[l], .. _bytes[r]];
        }
        var vocab = new Dictionary<string, int>(_bytes.Length, StringComparer.Ordinal);
        for (int id = 0; id < _bytes.Length; id++)
            if (!vocab.TryAdd(ByteLevel.Spell(_bytes[id]), id))
                throw new UserError($"BPE token {id} repeats an earlier token: the tokenizer data is damaged");
        _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = MergeLines(),
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(ByteLevel.Split, null),
        });
    }

    public static BpeTokens Learn(string text, int vocabSize) => new(BpeTrainer.Learn(text, vocabSize), vocabSize);

    /// <summary>The N of bpe:N; the vocabulary is smaller only when the text ran out of pairs to merge.</summary>
    public int Requested { get; }

    public string Name => $"bpe:{Requested}";
    public int VocabSize => _bytes.Length;
    public ReadOnlySpan<byte> TokenBytes(int id) => _bytes[id];

    public int[] Encode(string text, string source) => [.. _bpe.EncodeToIds(text)];

    public string Decode(ReadOnlySpan<int> ids) => _bpe.Decode(ids.ToArray()) ?? "";

    private IEnumerable<string> MergeLines()
    {
        foreach (var (l, r) in _merges) yield return $"{ByteLevel.Spell(_bytes[l])} {ByteLevel.Spell(_bytes[r])}";
    }

    /// <summary>vocab.json: {spelling: id} in id order.</summary>
    public string VocabJson()
    {
        var o = new JsonObject();
        for (int id = 0; id < _bytes.Length; id++) o[ByteLevel.Spell(_bytes[id])] = id;
        return o.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    /// <summary>merges.txt with the version line GPT-2's file starts with.</summary>
    public string MergesText()
    {
        var sb = new StringBuilder("#version: 0.2\n");
        foreach (var line in MergeLines()) sb.Append(line).Append('\n');
        return sb.ToString();
    }

    /// <summary>Writes vocab.json and merges.txt into dir.</summary>
    public void WriteFiles(string dir)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(Path.Combine(dir, "vocab.json"), VocabJson());
        AtomicFile.WriteAllText(Path.Combine(dir, "merges.txt"), MergesText());
    }

    // {"type":"bpe","vocab_size":N,"merges":[[l,r],…]}: merges by id, so the JSON needs no byte spelling
    public string ToJson()
    {
        var m = new JsonArray();
        foreach (var (l, r) in _merges) m.Add(new JsonArray(l, r));
        return new JsonObject { ["type"] = "bpe", ["vocab_size"] = Requested, ["merges"] = m }.ToJsonString();
    }

    public static BpeTokens FromJson(JsonObject o)
    {
        int requested = o["vocab_size"]?.GetValue<int>() ?? throw new UserError("the BPE tokenizer metadata lacks vocab_size: the file is damaged");
        var arr = o["merges"] as JsonArray ?? throw new UserError("the BPE tokenizer metadata lacks merges: the file is damaged");
        var merges = new List<(int, int)>(arr.Count);
        foreach (var e in arr)
        {
            if (e is not JsonArray p || p.Count != 2) throw new UserError("a BPE merge in the tokenizer metadata is not a pair of ids: the file is damaged");
            merges.Add((p[0]!.GetValue<int>(), p[1]!.GetValue<int>()));
        }
        return new BpeTokens(merges, requested);
    }
}
