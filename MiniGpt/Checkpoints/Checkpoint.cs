using MiniGpt.Model;
using MiniGpt.Tensors;

namespace MiniGpt.Checkpoints;

/// <summary>
/// A model checkpoint: the parameters as F32 safetensors under their TransformerLens names, with the
/// HookedTransformerConfig JSON in metadata "config" and the tokenizer in metadata "tokenizer". That file
/// alone loads in PyTorch/TransformerLens (state_dict + config). Training state (Adam moments, step,
/// RNG) goes in a sibling file, <see cref="TrainStatePath"/>, so the weights file stays a plain export.
/// </summary>
public static class Checkpoint
{
    public const string ConfigKey = "config";
    public const string TokenizerKey = "tokenizer";

    /// <summary>model.safetensors → model.train.safetensors</summary>
    public static string TrainStatePath(string checkpoint)
    {
        string stem = checkpoint.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? checkpoint[..^".safetensors".Length] : checkpoint;
        return stem + ".train.safetensors";
    }

    public static void Save(string path, GptModel model, string? tokenizerJson, IReadOnlyDictionary<string, string>? extraMetadata = null)
    {
        var meta = new Dictionary<string, string> { [ConfigKey] = model.Config.ToJson() };
        if (tokenizerJson != null) meta[TokenizerKey] = tokenizerJson;
        if (extraMetadata != null) foreach (var (k, v) in extraMetadata) meta[k] = v;
        SafeTensorsFile.Write(path, Tensors(model.Params, ""), meta);
    }

    public static List<(string, int[], ReadOnlyMemory<float>)> Tensors(Arena a, string prefix) =>
        a.Tensors.Select(t => (prefix + t.Name, t.Shape, (ReadOnlyMemory<float>)t.Memory)).ToList();

    /// <summary>Buffers TransformerLens keeps in its state_dict that are not parameters.</summary>
    public static bool IsIgnoredBuffer(string name) =>
        name.EndsWith("attn.mask", StringComparison.Ordinal) || name.EndsWith("attn.IGNORE", StringComparison.Ordinal);

    public sealed record Loaded(GptModel Model, string? TokenizerJson, SafeTensorsFile File);

    public static Loaded Load(string path)
    {
        var f = SafeTensorsFile.Open(path);
        if (!f.Metadata.TryGetValue(ConfigKey, out var cfgJson))
            throw new UserError($"'{path}' has no 'config' metadata: save it with the HookedTransformerConfig JSON under __metadata__['config']");
        ModelConfig cfg;
        try { cfg = ModelConfig.FromJson(cfgJson); }
        catch (UserError e) { throw new UserError($"'{path}': {e.Message}"); }
        var model = new GptModel(cfg);
        ReadInto(f, model.Params, "", path);
        f.Metadata.TryGetValue(TokenizerKey, out var tok);
        return new Loaded(model, tok, f);
    }

    /// <summary>Fills every tensor of the arena from f (names prefixed), checking there is nothing missing, extra or misshapen.</summary>
    public static void ReadInto(SafeTensorsFile f, Arena a, string prefix, string path, bool rejectExtras = true)
    {
        foreach (var t in a.Tensors)
        {
            if (!f.Entries.TryGetValue(prefix + t.Name, out var e))
                throw new UserError($"'{path}' lacks tensor '{prefix + t.Name}' that its config needs: the file and its config disagree");
            if (!e.Shape.AsSpan().SequenceEqual(t.Shape))
                throw new UserError($"'{path}': tensor '{e.Name}' is [{string.Join(", ", e.Shape)}] but the config needs {t.ShapeText}");
        }
        foreach (var name in rejectExtras ? f.Entries.Keys : [])
        {
            if (IsIgnoredBuffer(name)) continue;
            if (!name.StartsWith(prefix, StringComparison.Ordinal) || !a.Contains(name[prefix.Length..]))
                throw new UserError($"'{path}' has tensor '{name}' that its config does not use: the file and its config disagree");
        }
        foreach (var t in a.Tensors) f.ReadF32(prefix + t.Name, t.Span);
        foreach (var t in a.Tensors)
            if (!float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(t.Span)) && HasNonFinite(t.Span))
                throw new UserError($"'{path}': tensor '{prefix + t.Name}' holds NaN or Inf: the checkpoint is damaged");
    }

    private static bool HasNonFinite(ReadOnlySpan<float> s)
    {
        foreach (float x in s) if (!float.IsFinite(x)) return true;
        return false;
    }
}
