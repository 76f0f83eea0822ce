using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace MiniGpt.Data;

/// <summary>
/// OpenAI's cl100k_base (GPT-4) or o200k_base (GPT-4o) through Microsoft.ML.Tokenizers' Tiktoken
/// support, with the vocabulary files from its data packages. Those vocabularies have ~100k and
/// ~200k tokens: an embedding and unembedding that wide would dominate a small model's parameters
/// and every step's time, and most rows would never get a gradient. So the model's vocabulary is
/// compacted to the ids that occur in the training text: model id i is tiktoken id Ids[i] (ascending),
/// and the checkpoint stores that list. Text with a token outside it cannot be fed to the model.
/// </summary>
public sealed class TiktokenTokens : ITokenizer
{
    public static readonly string[] Encodings = ["cl100k_base", "o200k_base", "gpt2"];

    /// <summary>
    /// Encodings kept whole rather than compacted to a corpus: gpt2 keeps GPT-2's own 50,257 ids (50,256 = &lt;|endoftext|&gt;),
    /// so a model with this tokenizer has GPT-2's embedding rows, and pretrained GPT-2 weights and their token ids line up.
    /// </summary>
    public static bool IsFull(string encoding) => encoding == "gpt2";

    private readonly TiktokenTokenizer _tk;
    private readonly int[] _ids;                      // model id → tiktoken id
    private readonly Dictionary<int, int> _compact;   // tiktoken id → model id
    private readonly byte[][] _bytes;

    private TiktokenTokens(string encoding, TiktokenTokenizer tk, int[] ids)
    {
        Name = encoding; _tk = tk; _ids = ids;
        _compact = new Dictionary<int, int>(ids.Length);
        _bytes = new byte[ids.Length][];
        var decoder = TokenBytesOf(encoding);
        for (int i = 0; i < ids.Length; i++)
        {
            if (!_compact.TryAdd(ids[i], i) || (i > 0 && ids[i] <= ids[i - 1]))
                throw new UserError($"the {encoding} tokenizer's id list is not strictly increasing at {i}: the file is damaged");
            _bytes[i] = decoder.TryGetValue(ids[i], out var b) ? b
                : System.Text.Encoding.UTF8.GetBytes(tk.Decode([ids[i]]) ?? ""); // special tokens are not in Decoder
        }
    }

    private static readonly Dictionary<string, Dictionary<int, byte[]>> BytesCache = new();

    /// <summary>
    /// Every token's bytes, read from the data package's own file (a deflated .tiktoken: one
    /// line of base64 bytes per token), because the tokenizer decodes to strings and a token
    /// that ends inside a UTF-8 character cannot be a string.
    /// </summary>
    private static Dictionary<int, byte[]> TokenBytesOf(string encoding)
    {
        lock (BytesCache)
        {
            if (BytesCache.TryGetValue(encoding, out var cached)) return cached;
            string pkg = encoding switch { "cl100k_base" => "Cl100kBase", "gpt2" => "Gpt2", _ => "O200kBase" };
            var asm = System.Reflection.Assembly.Load($"Microsoft.ML.Tokenizers.Data.{pkg}");
            using var raw = asm.GetManifestResourceStream($"{encoding}.tiktoken.deflate")
                ?? throw new UserError($"the {encoding} data package lacks its vocabulary file: reinstall Microsoft.ML.Tokenizers.Data.{pkg}");
            using var inflate = new System.IO.Compression.DeflateStream(raw, System.IO.Compression.CompressionMode.Decompress);
            using var reader = new StreamReader(inflate);
            var map = new Dictionary<int, byte[]>(1 << 17);
            int next = 0;
            while (reader.ReadLine() is { } line)
            {
                // the package's file starts with a "Capacity: N" line (a size hint); then one token per line,
                // "base64" with the id implied by the line's order, or "base64 id" as in OpenAI's files
                if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
                int sp = line.IndexOf(' ');
                int id = sp > 0 ? int.Parse(line.AsSpan(sp + 1), System.Globalization.CultureInfo.InvariantCulture) : next;
                map[id] = Convert.FromBase64String(sp > 0 ? line[..sp] : line);
                next = id + 1;
            }
            BytesCache[encoding] = map;
            return map;
        }
    }

    /// <summary>The tokenizer compacted to the tokens of text (its training corpus); a full encoding (gpt2) keeps every id.</summary>
    public static TiktokenTokens Learn(string encoding, string text) => IsFull(encoding) ? Full(encoding) : Compact(encoding, Load(encoding).EncodeToIds(text));

    // (Compact of a full encoding is the full vocabulary too, so prepare's streaming path keeps GPT-2's ids)

    /// <summary>The whole vocabulary, model id = tiktoken id.</summary>
    public static TiktokenTokens Full(string encoding)
    {
        var tk = Load(encoding);
        int n = TokenBytesOf(encoding).Keys.Max() + 1 + (encoding == "gpt2" ? 1 : 0); // gpt2: the 50,256 ranks and <|endoftext|>
        return new TiktokenTokens(encoding, tk, [.. Enumerable.Range(0, n)]);
    }

    /// <summary>The tokenizer compacted to the given tiktoken ids (any order, repeats allowed).</summary>
    public static TiktokenTokens Compact(string encoding, IEnumerable<int> tiktokenIds)
    {
        if (IsFull(encoding)) return Full(encoding);
        var set = new SortedSet<int>(tiktokenIds);
        return new TiktokenTokens(encoding, Load(encoding), [.. set]);
    }

    /// <summary>The full tokenizer, for encoding with tiktoken ids before compaction.</summary>
    public static TiktokenTokenizer Load(string encoding) =>
        encoding == "gpt2" ? TiktokenTokenizer.CreateForModel("gpt2") : TiktokenTokenizer.CreateForEncoding(encoding); // gpt2 is a model name, not an encoding, to the library

    public string Name { get; }

    /// <summary>For the log: how far the vocabulary was compacted.</summary>
    public string Describe() => IsFull(Name) ? $"{Name}, all {VocabSize:N0} of its ids"
        : $"{Name} compacted to the {VocabSize:N0} of its {TokenBytesOf(Name).Count:N0} tokens that occur in the training text";
    public int VocabSize => _ids.Length;
    public ReadOnlySpan<byte> TokenBytes(int id) => _bytes[id];

    /// <summary>Model id for a tiktoken id, or −1 when the training text never had it.</summary>
    public int ToModel(int tiktokenId) => _compact.TryGetValue(tiktokenId, out int i) ? i : -1;

    public int[] Encode(string text, string source)
    {
        var raw = _tk.EncodeToIds(text);
        var ids = new int[raw.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = ToModel(raw[i]);
            if (ids[i] < 0)
                throw new UserError($"{source}: token {raw[i]} ('{_tk.Decode([raw[i]])}') of {Name} never occurred in the training text, so the model's compacted vocabulary of {VocabSize} has no row for it: use text like the training corpus");
        }
        return ids;
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var raw = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++) raw[i] = _ids[ids[i]];
        return _tk.Decode(raw) ?? "";
    }

    // {"type":"tiktoken","encoding":"cl100k_base","ids":[…]}: the compacted vocabulary, model id = index
    // a full encoding writes {"type":"tiktoken","encoding":"gpt2","full":true}: its ids are 0 … n−1
    public string ToJson() => IsFull(Name)
        ? new JsonObject { ["type"] = "tiktoken", ["encoding"] = Name, ["full"] = true }.ToJsonString()
        : new JsonObject { ["type"] = "tiktoken", ["encoding"] = Name, ["ids"] = new JsonArray([.. _ids.Select(i => (JsonNode)i)]) }.ToJsonString();

    public static TiktokenTokens FromJson(JsonObject o)
    {
        string enc = o["encoding"]?.GetValue<string>() ?? throw new UserError("the tiktoken tokenizer metadata lacks its encoding: the file is damaged");
        if (!Encodings.Contains(enc)) throw new UserError($"the checkpoint's tokenizer is tiktoken '{enc}', which this version does not have (it has {string.Join(", ", Encodings)})");
        if (o["full"] is JsonValue full && full.GetValue<bool>()) return Full(enc);
        var arr = o["ids"] as JsonArray ?? throw new UserError("the tiktoken tokenizer metadata lacks its ids: the file is damaged");
        return new TiktokenTokens(enc, Load(enc), [.. arr.Select(n => n?.GetValue<int>() ?? throw new UserError("the tiktoken tokenizer metadata has a missing id: the file is damaged"))]);
    }
}
