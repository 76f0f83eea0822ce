using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt.Data;

/// <summary>
/// The sidecar of prepared token files: meta.json beside train.bin and val.bin, naming the tokenizer
/// (its checkpoint JSON), the vocabulary size and the element type. The .bin files themselves are
/// headerless little-endian uint16 (or uint32 when the vocabulary exceeds 65,536), as nanoGPT's
/// prepare.py writes them, so np.memmap(path, dtype=np.uint16) reads them as they are.
/// </summary>
public sealed record PreparedMeta(string TokenizerJson, string TokenizerName, int VocabSize, string Dtype, long TrainTokens, long ValTokens, string Source)
{
    public const string FileName = "meta.json";

    public int BytesPerToken => Dtype == "uint16" ? 2 : 4;

    public static string DtypeFor(int vocab) => vocab <= 1 << 16 ? "uint16" : "uint32";

    /// <summary>meta.json in the folder of a .bin, or null when there is none (a bare nanoGPT .bin).</summary>
    public static PreparedMeta? Beside(string binPath)
    {
        string p = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(binPath))!, FileName);
        if (!File.Exists(p)) return null;
        var meta = Read(p);
        meta.CheckSize(binPath);
        return meta;
    }

    /// <summary>
    /// train.bin and val.bin hold the token counts meta.json gives (a folder whose files disagree comes from two prepare
    /// runs, e.g. one stopped part-way through --overwrite, and its ids may not even be the stored tokenizer's).
    /// </summary>
    private void CheckSize(string binPath)
    {
        string name = Path.GetFileName(binPath);
        long? tokens = name == "train.bin" ? TrainTokens : name == "val.bin" ? ValTokens : null;
        if (tokens is not long n || !File.Exists(binPath)) return;
        long bytes = new FileInfo(binPath).Length;
        if (bytes != n * BytesPerToken)
            throw new UserError($"'{binPath}' holds {bytes / BytesPerToken:N0} tokens but {FileName} beside it says {n:N0}: the folder mixes two prepare runs; " +
                "run prepare --overwrite on it again");
    }

    /// <summary>The val.bin of a folder written by prepare (what eval and circuits measure on); any other path as given.</summary>
    public static string ValidationSplit(string data) =>
        Directory.Exists(data) && File.Exists(Path.Combine(data, FileName)) ? Path.Combine(data, "val.bin") : data;

    public void Write(string dir) => AtomicFile.WriteAllText(Path.Combine(dir, FileName), new JsonObject
    {
        ["tokenizer"] = TokenizerName, ["vocab_size"] = VocabSize, ["dtype"] = Dtype,
        ["train_tokens"] = TrainTokens, ["val_tokens"] = ValTokens, ["source"] = Source,
        ["tokenizer_json"] = TokenizerJson,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n");

    public static PreparedMeta Read(string path)
    {
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new FormatException();
            var m = new PreparedMeta(o["tokenizer_json"]!.GetValue<string>(), o["tokenizer"]!.GetValue<string>(), o["vocab_size"]!.GetValue<int>(),
                o["dtype"]!.GetValue<string>(), o["train_tokens"]!.GetValue<long>(), o["val_tokens"]!.GetValue<long>(), o["source"]?.GetValue<string>() ?? "");
            if (m.Dtype is not ("uint16" or "uint32")) throw new FormatException();
            return m;
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or NullReferenceException)
        {
            throw new UserError($"'{path}' is not a meta.json written by prepare (tokenizer, vocab_size, dtype): prepare the data again");
        }
    }
}
