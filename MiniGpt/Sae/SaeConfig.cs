using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt.Sae;

/// <summary>
/// The two sparse autoencoder architectures:
/// Relu, f = ReLU((x − b_dec)·W_enc + b_enc) with an L1 penalty on f weighted by the decoder rows' norms
/// (Anthropic, "Circuits Updates – April 2024": L = ‖x − x̂‖² + λ Σ_i f_i ‖W_dec,i‖);
/// TopK, f = ReLU(TopK_k(pre)), only the k largest pre-activations kept, no penalty (Gao et al. 2024,
/// "Scaling and evaluating sparse autoencoders"), decoder rows held at unit norm.
/// </summary>
public enum SaeArchitecture { Relu, TopK }

/// <summary>
/// What an SAE is and where it reads: d_in (the activation's width at the hook), d_sae (the features),
/// the architecture and its k, and the hook. Written beside the weights as SAELens's cfg.json.
/// </summary>
public sealed record SaeConfig
{
    public required int DIn { get; init; }
    public required int DSae { get; init; }
    public SaeArchitecture Architecture { get; init; } = SaeArchitecture.Relu;
    /// <summary>TopK's k (ignored by Relu).</summary>
    public int K { get; init; } = 32;
    /// <summary>TransformerLens hook name, e.g. blocks.0.hook_resid_post.</summary>
    public required string HookName { get; init; }
    /// <summary>The block of the hook (−1 outside the blocks).</summary>
    public int HookLayer { get; init; }
    /// <summary>The checkpoint's n_ctx, for SAELens's context_size.</summary>
    public int ContextSize { get; init; }

    public string ArchitectureName => Architecture == SaeArchitecture.TopK ? "topk" : "standard";

    public void Validate()
    {
        if (DIn < 1) throw new UserError($"d_in must be ≥ 1, got {DIn}");
        if (DSae < 1) throw new UserError($"--d-sae must be ≥ 1, got {DSae}: give the number of features, e.g. 8 × d_in");
        if (2L * DIn * DSae + DSae + DIn > Array.MaxLength)
            throw new UserError($"--d-sae {DSae} is too large for d_in {DIn}: the SAE would hold {2L * DIn * DSae + DSae + DIn:N0} parameters, more than one array can; lower --d-sae");
        if (Architecture == SaeArchitecture.TopK && (K < 1 || K > DSae))
            throw new UserError($"--k {K} must be in [1, d_sae = {DSae}]: k is the number of features each activation keeps");
    }

    /// <summary>
    /// SAELens's cfg.json for these weights (sae_lens SAE.from_pretrained / load_from_disk reads it): the weights are in the
    /// activations' own scale (normalize_activations "none") and b_dec is subtracted from the input (apply_b_dec_to_input).
    /// </summary>
    public string ToSaeLensJson(string modelName, IReadOnlyDictionary<string, JsonNode?>? extra = null)
    {
        var o = new JsonObject
        {
            ["architecture"] = ArchitectureName,
            ["d_in"] = DIn,
            ["d_sae"] = DSae,
            ["dtype"] = "float32",
            ["device"] = "cpu",
            ["model_name"] = modelName,
            ["hook_name"] = HookName,
            ["hook_layer"] = HookLayer,
            ["hook_head_index"] = null,
            ["activation_fn_str"] = Architecture == SaeArchitecture.TopK ? "topk" : "relu",
            ["activation_fn_kwargs"] = Architecture == SaeArchitecture.TopK ? new JsonObject { ["k"] = K } : new JsonObject(),
            ["apply_b_dec_to_input"] = true,
            ["finetuning_scaling_factor"] = false,
            ["normalize_activations"] = "none",
            ["context_size"] = ContextSize,
            ["dataset_path"] = "",
            ["prepend_bos"] = false,
            ["sae_lens_training_version"] = null,
        };
        if (extra != null)
            foreach (var (k, v) in extra) o[k] = v?.DeepClone();
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads cfg.json as <see cref="ToSaeLensJson"/> writes it (and as SAELens writes it for these two architectures).</summary>
    public static SaeConfig FromSaeLensJson(string json, string what)
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new UserError($"{what} is not a JSON object"); }
        catch (JsonException e) { throw new UserError($"{what} is not valid JSON ({e.Message.Split('.')[0]})"); }
        int Int(string key) => o[key] is JsonValue v && v.TryGetValue(out int i) ? i : throw new UserError($"{what} has no integer '{key}'");
        string arch = o["architecture"]?.GetValue<string>() ?? "standard";
        var a = arch switch
        {
            "standard" => SaeArchitecture.Relu,
            "topk" => SaeArchitecture.TopK,
            _ => throw new UserError($"{what}: architecture '{arch}' is not one MiniGpt runs: use standard or topk"),
        };
        int k = a == SaeArchitecture.TopK && o["activation_fn_kwargs"] is JsonObject kw && kw["k"] is JsonValue kv && kv.TryGetValue(out int kk) ? kk : 32;
        return new SaeConfig
        {
            DIn = Int("d_in"), DSae = Int("d_sae"), Architecture = a, K = k,
            HookName = o["hook_name"]?.GetValue<string>() ?? throw new UserError($"{what} has no 'hook_name'"),
            HookLayer = o["hook_layer"] is JsonValue hl && hl.TryGetValue(out int l) ? l : -1,
            ContextSize = o["context_size"] is JsonValue cs && cs.TryGetValue(out int n) ? n : 0,
        };
    }
}
