using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using MiniGpt.Checkpoints;

namespace MiniGpt.Training;

/// <summary>
/// Where the weights of a fine-tuning run (train --init-from F) came from, as the run folder's config.json, the
/// training state and every checkpoint's metadata record it: F as given and as an absolute path, its format
/// (minigpt: MiniGpt's .safetensors; hf: a Hugging Face GPT-2 folder; llmc: llm.c's gpt2_*.bin), the weights
/// file's size and SHA-256, and for hf the SHA-256 of config.json as well (the shape is read from it).
/// SHA-256 always, whatever the size: the loader reads every byte of the file anyway, and hashing runs at about
/// 500 MB/s here (about 1 s for GPT-2 124M's 500 MB), one more pass over a file just read and in the page cache;
/// size + mtime would change on a copy and miss an edit in place.
/// </summary>
public sealed record InitSource
{
    /// <summary>F as given on the command line.</summary>
    public string Path { get; init; } = "";
    public string FullPath { get; init; } = "";
    /// <summary>minigpt, hf or llmc.</summary>
    public string Format { get; init; } = "";
    /// <summary>The file holding the weights (F itself, or an hf folder's model.safetensors), absolute.</summary>
    public string WeightsFile { get; init; } = "";
    public long Bytes { get; init; }
    /// <summary>Lower-case hex SHA-256 of the weights file (what `sha256sum` prints).</summary>
    public string Sha256 { get; init; } = "";
    /// <summary>hf only: SHA-256 of config.json; null otherwise.</summary>
    public string? ConfigSha256 { get; init; }
    /// <summary>The checkpoint's own "step" metadata (a MiniGpt run's), when it has one.</summary>
    public string? Step { get; init; }

    /// <summary>Describes F (which must exist: call after Checkpoint.Load has read it).</summary>
    public static InitSource Of(string path, Checkpoint.Loaded? loaded = null)
    {
        string full = System.IO.Path.GetFullPath(path);
        string format = HuggingFaceGpt2.Is(path) ? "hf" : LlmcGpt2.Is(path) ? "llmc" : "minigpt";
        string weights = format == "hf" && Directory.Exists(path) ? System.IO.Path.Combine(full, "model.safetensors") : full;
        string? configHash = format == "hf" ? Hash(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(weights)!, "config.json")) : null;
        string? step = null;
        loaded?.File?.Metadata.TryGetValue("step", out step);
        return new InitSource
        {
            Path = path, FullPath = full, Format = format, WeightsFile = weights, Bytes = new FileInfo(weights).Length,
            Sha256 = Hash(weights), ConfigSha256 = configHash, Step = format == "minigpt" ? step : null,
        };
    }

    /// <summary>SHA-256 of a file, streamed (a 500 MB GPT-2 is never held in memory for it).</summary>
    public static string Hash(string file)
    {
        try
        {
            using var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            return Convert.ToHexStringLower(SHA256.HashData(fs));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"cannot read '{file}' to record it as the run's source ({e.Message}): check the file");
        }
    }

    /// <summary>One line for the log: "F (hf, 1,234 bytes, sha256 0123abcd…)".</summary>
    public string Describe() =>
        $"{Path} ({Format}, {Bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes, sha256 {Sha256[..Math.Min(12, Sha256.Length)]}…" +
        (Step != null ? $", its step {Step}" : "") + ")";

    public string ToJson() => JsonSerializer.Serialize(this, JsonOpts);

    internal static readonly JsonSerializerOptions JsonOpts = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
}
