using MiniGpt.Checkpoints;

namespace MiniGpt.Sae;

/// <summary>
/// An SAE on disk as SAELens saves one: a folder with sae_weights.safetensors (W_enc [d_in, d_sae], b_enc [d_sae],
/// W_dec [d_sae, d_in], b_dec [d_in], float32) and cfg.json, so `SAE.load_from_disk(folder)` in sae_lens reads it.
/// Each file is written whole or not at all.
/// </summary>
public static class SaeFile
{
    public const string WeightsName = "sae_weights.safetensors", ConfigName = "cfg.json";

    public static void Save(string dir, SparseAutoencoder sae, string modelName, IReadOnlyDictionary<string, string>? metadata = null,
        IReadOnlyDictionary<string, System.Text.Json.Nodes.JsonNode?>? extraConfig = null)
    {
        Directory.CreateDirectory(dir);
        SafeTensorsFile.Write(Path.Combine(dir, WeightsName), sae.Tensors(), metadata);
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigName), sae.Config.ToSaeLensJson(modelName, extraConfig) + "\n");
    }

    public static SparseAutoencoder Load(string dir)
    {
        string weights = Path.Combine(dir, WeightsName), cfg = Path.Combine(dir, ConfigName);
        if (!Directory.Exists(dir)) throw new UserError($"'{dir}' does not exist: give the folder the sae verb wrote (it holds {WeightsName} and {ConfigName})");
        if (!File.Exists(weights) || !File.Exists(cfg))
            throw new UserError($"'{dir}' has no {(File.Exists(weights) ? ConfigName : WeightsName)}: give the folder the sae verb wrote");
        var config = SaeConfig.FromSaeLensJson(File.ReadAllText(cfg), cfg);
        var sae = new SparseAutoencoder(config);
        var file = SafeTensorsFile.Open(weights);
        foreach (var (name, shape, _) in sae.Tensors())
        {
            if (!file.Entries.TryGetValue(name, out var e)) throw new UserError($"'{weights}' has no tensor {name}");
            if (!e.Shape.SequenceEqual(shape))
                throw new UserError($"'{weights}': {name} is [{string.Join(", ", e.Shape)}] but cfg.json says [{string.Join(", ", shape)}]");
        }
        file.ReadF32("W_enc", sae.WEnc);
        file.ReadF32("b_enc", sae.BEnc);
        file.ReadF32("W_dec", sae.WDec);
        file.ReadF32("b_dec", sae.BDec);
        return sae;
    }
}
