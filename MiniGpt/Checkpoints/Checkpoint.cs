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
    public static string TrainStatePath(string checkpoint) => Stem(checkpoint) + ".train.safetensors";

    /// <summary>The checkpoint path without its .safetensors extension (files that belong to it share this stem).</summary>
    public static string Stem(string checkpoint) =>
        checkpoint.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? checkpoint[..^".safetensors".Length] : checkpoint;

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

    public sealed record Loaded(GptModel Model, string? TokenizerJson, SafeTensorsFile? File);

    /// <summary>Loads a checkpoint into a new model running the given kernels (null: <see cref="Layers.Kernels.Default"/>).</summary>
    public static Loaded Load(string path, Layers.IKernels? kernels = null)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new UserError("the checkpoint path is empty: give a .safetensors checkpoint, a Hugging Face GPT-2 folder or llm.c's .bin");
        // a Hugging Face GPT-2 folder (or its model.safetensors beside a config.json of model_type gpt2) converts on load
        if (HuggingFaceGpt2.Is(path)) return HuggingFaceGpt2.Load(path, kernels);
        if (LlmcGpt2.Is(path)) return LlmcGpt2.Load(path, kernels); // llm.c's gpt2_124M.bin layout, recognised by its magic number
        if (Directory.Exists(path))
            throw new UserError(File.Exists(Path.Combine(path, "config.json"))
                ? $"'{path}' is a folder whose config.json is not a GPT-2 config (model_type \"gpt2\"): give a Hugging Face GPT-2 folder or a MiniGpt .safetensors checkpoint"
                : $"'{path}' is a folder: give a MiniGpt .safetensors checkpoint, or a Hugging Face GPT-2 folder (model.safetensors and config.json)");
        var f = SafeTensorsFile.Open(path);
        if (!f.Metadata.TryGetValue(ConfigKey, out var cfgJson))
            throw new UserError(f.Entries.ContainsKey("wte.weight") || f.Entries.ContainsKey("transformer.wte.weight")
                ? $"'{path}' holds GPT-2 weights in the Hugging Face layout but no config.json beside it: put the model's config.json in the same folder"
                : $"'{path}' has no 'config' metadata: save it with the HookedTransformerConfig JSON under __metadata__['config']");
        ModelConfig cfg;
        try { cfg = ModelConfig.FromJson(cfgJson); }
        catch (UserError e) { throw new UserError($"'{path}': {e.Message}"); }
        // every layer has at least its 8 attention tensors: a config claiming more layers than the file can hold
        // is refused before its layout (a name per tensor per layer) is built, which for n_layers = 10⁵ is 200 MB
        if ((long)cfg.NLayers * 8 > f.Entries.Count)
            throw new UserError($"'{path}': its config claims {cfg.NLayers} layers but the file holds only {f.Entries.Count} tensors: the file and its config disagree");
        // check the tensors against the config before allocating what the config claims
        CheckEntries(f, ParameterLayout.Declare(cfg).Declarations, "", path, rejectExtras: true);
        var model = new GptModel(cfg, kernels);
        ReadInto(f, model.Params, "", path);
        f.Metadata.TryGetValue(TokenizerKey, out var tok);
        return new Loaded(model, tok, f);
    }

    /// <summary>Checks that f has every declared tensor (names prefixed) with its shape and, if rejectExtras, nothing else.</summary>
    public static void CheckEntries(SafeTensorsFile f, IReadOnlyList<(string Name, int[] Shape)> declared, string prefix, string path, bool rejectExtras)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in declared)
        {
            names.Add(prefix + name);
            if (!f.Entries.TryGetValue(prefix + name, out var e))
                throw new UserError($"'{path}' lacks tensor '{prefix + name}' that its config needs: the file and its config disagree");
            if (!e.Shape.AsSpan().SequenceEqual(shape))
                throw new UserError($"'{path}': tensor '{e.Name}' is [{string.Join(", ", e.Shape)}] but the config needs [{string.Join(", ", shape)}]");
        }
        if (!rejectExtras) return;
        foreach (var name in f.Entries.Keys)
            if (!IsIgnoredBuffer(name) && !names.Contains(name))
                throw new UserError($"'{path}' has tensor '{name}' that its config does not use: the file and its config disagree");
    }

    /// <summary>Fills every tensor of the arena from f (names prefixed) after checking names and shapes.</summary>
    public static void ReadInto(SafeTensorsFile f, Arena a, string prefix, string path, bool rejectExtras = true)
    {
        CheckEntries(f, a.Tensors.Select(t => (t.Name, t.Shape)).ToList(), prefix, path, rejectExtras);
        foreach (var t in a.Tensors) f.ReadF32(prefix + t.Name, t.Span);
        foreach (var t in a.Tensors)
            if (HasNonFinite(t.Span))
                throw new UserError($"'{path}': tensor '{prefix + t.Name}' holds NaN or Inf: the checkpoint is damaged");
    }

    private static bool HasNonFinite(ReadOnlySpan<float> s)
    {
        foreach (float x in s) if (!float.IsFinite(x)) return true;
        return false;
    }
}
