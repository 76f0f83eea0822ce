using System.Text.Json.Nodes;
using MiniGpt.Superposition;

using static MiniGpt.Train.Report.CircuitsJson;

namespace MiniGpt.Train.Report;

/// <summary>
/// superposition.json: every number of a <see cref="SuperpositionResult"/>. Each model of a sweep holds its W
/// ([m][n], row k is hidden coordinate k), b, WᵀW, the per-feature norms, superposition and dimensionality, the
/// represented features, the orthogonality against random directions, its loss curve and, for m = 2, the angles.
/// Non-finite numbers are null.
/// </summary>
public static class SuperpositionJson
{
    public static JsonObject Build(SuperpositionResult r, IReadOnlyList<PlotImage> plots)
    {
        var o = r.Options;
        var t = o.Train;
        return new JsonObject
        {
            ["paper"] = "Elhage et al. 2022, Toy Models of Superposition (transformer-circuits.pub/2022/toy_model)",
            ["model"] = "x' = ReLU(WᵀW·x + b), W [m, n]; loss = mean over the batch of Σ_i I_i·(x_i − x'_i)²; x_i = 0 with probability S, else U[0, 1]",
            ["options"] = new JsonObject
            {
                ["n"] = o.N, ["m"] = o.M, ["sparsities"] = Doubles(o.Sparsities), ["importance"] = o.Importance,
                ["plane_n"] = o.PlaneN, ["plane_restarts"] = o.PlaneRestarts, ["phase_grid"] = o.PhaseGrid, ["phase_restarts"] = o.PhaseRestarts, ["phase_steps"] = o.PhaseSteps,
                ["steps"] = t.Steps, ["batch_size"] = t.BatchSize, ["lr"] = t.Lr, ["lr_schedule"] = "cosine from lr to lr/10",
                ["optimizer"] = "adamw", ["beta1"] = t.Beta1, ["beta2"] = t.Beta2, ["eps"] = t.Eps, ["weight_decay"] = t.WeightDecay,
                ["restarts"] = t.Restarts, ["eval_samples"] = t.EvalSamples, ["seed"] = o.Seed,
            },
            ["represented_norm"] = FeatureGeometry.RepresentedNorm,
            ["main"] = new JsonArray(r.Main.Select(x => (JsonNode?)Run(x)).ToArray()),
            ["plane"] = new JsonArray(r.Plane.Select(x => (JsonNode?)Run(x)).ToArray()),
            ["phase"] = r.Phase is { } pd ? Phase(pd) : null,
            ["seconds"] = r.Seconds,
            ["threads"] = r.Threads,
            ["plots"] = new JsonArray(plots.Select(x => (JsonNode?)x.FileName).ToArray()),
        };
    }

    public static JsonObject Run(SparsityRun x)
    {
        var model = x.Trained.Model;
        var g = x.Geometry;
        var w = new JsonArray();
        for (int k = 0; k < model.M; k++) w.Add(Floats(model.W.AsSpan(k * model.N, model.N)));
        var json = new JsonObject
        {
            ["sparsity"] = x.Sparsity, ["n"] = model.N, ["m"] = model.M,
            ["importance"] = Floats(model.Importance),
            ["eval_loss"] = N(x.Trained.EvalLoss), ["restart"] = x.Trained.Restart, ["restart_losses"] = Doubles(x.Trained.RestartLosses),
            ["represented"] = new JsonArray(g.Represented.Select(i => (JsonNode?)i).ToArray()),
            ["represented_count"] = g.Represented.Length,
            ["dimensions_per_feature"] = N(g.DimensionsPerFeature),
            ["norms"] = Doubles(g.Norms), ["superposition"] = Doubles(g.Superposition), ["dimensionality"] = Doubles(g.Dimensionality),
            ["W"] = w, ["b"] = Floats(model.B),
            ["WtW"] = PatchJson.Nested(g.Gram, [model.N, model.N]),
            ["orthogonality"] = x.Orthogonality is { } s ? new JsonObject
            {
                ["features"] = s.Features, ["dims"] = s.Dims,
                ["mean_abs_cos"] = N(s.MeanAbsCos), ["max_abs_cos"] = N(s.MaxAbsCos), ["mean_sq_cos"] = N(s.MeanSqCos),
                ["cos_mean"] = N(s.CosMean), ["cos_std"] = N(s.CosStd),
                ["random_mean_abs_cos"] = N(s.RandomMeanAbsCos), ["random_max_abs_cos"] = N(s.RandomMaxAbsCos),
                ["random_mean_sq_cos"] = N(s.RandomMeanSqCos), ["random_cos_std"] = N(s.RandomCosStd),
                ["expected_std"] = N(s.ExpectedStd), ["tight_frame_floor"] = N(s.TightFrameFloor), ["random_trials"] = OrthogonalityStats.Trials,
            } : null,
            ["loss_curve"] = Doubles(x.Trained.LossCurve),
        };
        if (x.Angles != null) json["angles_deg"] = Doubles(x.Angles);
        if (x.NeighbourGaps != null) json["neighbour_gaps_deg"] = Doubles(x.NeighbourGaps);
        return json;
    }

    private static JsonObject Phase(PhaseDiagram pd)
    {
        var counts = new JsonObject();
        foreach (var (p, c) in pd.Counts()) counts[Name(p)] = c;
        int agree = pd.Cells.Count(c => c.Phase == PhaseTheory.Predict(c.Sparsity, c.RelativeImportance));
        return new JsonObject
        {
            ["definition"] = "n = 2, m = 1, importance [1, r]; a feature is represented when |W_i| > 0.5; phases: feature_0_only (the extra feature is not learned), " +
                             "extra_only (the extra feature takes the dimension), superposition (both, W_0·W_1 < 0: antipodal), both_same_side, neither",
            ["sparsities"] = Doubles(pd.Sparsities), ["densities"] = Doubles(pd.Sparsities.Select(s => 1 - s).ToArray()), ["ratios"] = Doubles(pd.Ratios),
            ["counts"] = counts,
            ["theory_agreement"] = agree, ["cells_total"] = pd.Cells.Length,
            ["cells"] = new JsonArray(pd.Cells.Select(c =>
            {
                var (a, b, s) = PhaseTheory.Losses(c.Sparsity, c.RelativeImportance);
                return (JsonNode?)new JsonObject
                {
                    ["sparsity"] = c.Sparsity, ["ratio"] = c.RelativeImportance, ["phase"] = Name(c.Phase),
                    ["theory"] = Name(PhaseTheory.Predict(c.Sparsity, c.RelativeImportance)),
                    ["W"] = Floats(c.W), ["b"] = Floats(c.B), ["eval_loss"] = N(c.Loss),
                    ["theory_losses"] = new JsonObject { ["feature_0_only"] = a, ["extra_only"] = b, ["superposition"] = s },
                };
            }).ToArray()),
        };
    }

    public static string Name(Phase p) => p switch
    {
        MiniGpt.Superposition.Phase.FirstOnly => "feature_0_only",
        MiniGpt.Superposition.Phase.SecondOnly => "extra_only",
        MiniGpt.Superposition.Phase.Superposition => "superposition",
        MiniGpt.Superposition.Phase.BothSameSide => "both_same_side",
        _ => "neither",
    };

    private static JsonArray Doubles(IEnumerable<double> v) => new(v.Select(x => (JsonNode?)N(x)).ToArray());
    private static JsonArray Floats(ReadOnlySpan<float> v)
    {
        var a = new JsonArray();
        foreach (float f in v) a.Add(N(f));
        return a;
    }
}
