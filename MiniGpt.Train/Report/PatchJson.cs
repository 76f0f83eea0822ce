using System.Text.Json.Nodes;
using MiniGpt.Data;
using MiniGpt.Patching;

using static MiniGpt.Train.Report.CircuitsJson;

namespace MiniGpt.Train.Report;

/// <summary>
/// patch.json: every number of a <see cref="PatchingResult"/>. Grids hold their axes, shape, normalised
/// values (0 = corrupted, 1 = clean) and the raw metric per cell, both as nested arrays in axis order;
/// non-finite numbers (no such path, an undefined normalisation, an undefined correlation) are null.
/// </summary>
public static class PatchJson
{
    public static JsonObject Build(PatchingResult r, string checkpoint, TokenText text, IReadOnlyList<PlotImage> plots)
    {
        var p = r.Prompts;
        var c = r.Config;
        var pairs = new JsonArray();
        for (int b = 0; b < p.Batch; b++)
        {
            // each pair as given, without the padding that fits it into the batch's seq_len
            var clean = p.Clean.AsSpan(b * p.SeqLen, p.Lengths[b]);
            var corrupted = p.Corrupted.AsSpan(b * p.SeqLen, p.Lengths[b]);
            pairs.Add(new JsonObject
            {
                ["length"] = p.Lengths[b],
                ["clean"] = Ints(clean.ToArray()), ["corrupted"] = Ints(corrupted.ToArray()),
                ["clean_text"] = text.ShowAll(clean), ["corrupted_text"] = text.ShowAll(corrupted),
                ["targets"] = new JsonArray(p.Targets[b].Select(t => (JsonNode?)new JsonObject
                {
                    ["position"] = t.Position, ["answer"] = t.Answer, ["wrong"] = t.Wrong,
                    ["answer_text"] = text.Show(t.Answer), ["wrong_text"] = text.Show(t.Wrong),
                }).ToArray()),
            });
        }
        var dla = r.DirectLogitAttribution;
        var headGrid = dla.HeadGrid(c);
        return new JsonObject
        {
            ["checkpoint"] = checkpoint,
            ["config"] = JsonNode.Parse(c.ToJson()),
            ["tokenizer"] = text.TokenizerName,
            ["metric"] = r.Metric,
            // denoising: one clean activation patched into the corrupted run; noising: one corrupted activation into the clean run
            ["direction"] = r.Noising ? "noising" : "denoising",
            ["clean_metric"] = N(r.Clean),
            ["corrupted_metric"] = N(r.Corrupted),
            ["warnings"] = new JsonArray(PatchCells.GapWarning(r) is { } w ? [(JsonNode?)w] : []),
            ["notes"] = new JsonArray((r.Notes ?? []).Select(n => (JsonNode?)n).ToArray()),
            ["normalisation"] = r.Noising
                ? "(m − clean_metric) / (corrupted_metric − clean_metric): 0 = clean run, 1 = corrupted run"
                : "(m − corrupted_metric) / (clean_metric − corrupted_metric): 0 = corrupted run, 1 = clean run",
            // [layer][head]: mean over the targets of the largest attention probability in the run patched into
            ["attention_saturation"] = new JsonArray(Enumerable.Range(0, c.NLayers).Select(l =>
                (JsonNode?)new JsonArray(Enumerable.Range(0, c.NHeads).Select(h => (JsonNode?)N(r.Saturation[l * c.NHeads + h])).ToArray())).ToArray()),
            ["prompts"] = new JsonObject
            {
                ["description"] = p.Description, ["batch"] = p.Batch, ["seq_len"] = p.SeqLen, ["targets"] = p.TargetCount, ["pairs"] = pairs,
            },
            ["exact"] = new JsonArray(r.Exact.Select(g => (JsonNode?)Grid(g, r.Noising)).ToArray()),
            ["attribution"] = new JsonArray(r.Attribution.Select(g => (JsonNode?)Grid(g, r.Noising)).ToArray()),
            ["comparisons"] = new JsonArray(r.Comparisons.Select(x => (JsonNode?)new JsonObject
            {
                ["name"] = x.Name, ["pearson_r"] = N(x.Correlation), ["max_abs_difference"] = N(x.MaxAbsDifference),
                ["worst_cell"] = new JsonArray(x.WorstCell.Select(i => (JsonNode?)i).ToArray()),
                ["exact_seconds"] = x.ExactSeconds, ["attribution_seconds"] = x.AttributionSeconds,
            }).ToArray()),
            ["paths"] = new JsonArray(r.Paths.Select(x => (JsonNode?)new JsonObject
            {
                ["receiver"] = $"L{x.ReceiverLayer}H{x.ReceiverHead}", ["receiver_layer"] = x.ReceiverLayer, ["receiver_head"] = x.ReceiverHead,
                ["input"] = x.Input.ToString().ToLowerInvariant(), ["grid"] = Grid(x.Grid, r.Noising),
                // the senders that are not heads: the embeddings, then each MLP below the receiver
                ["other_senders"] = new JsonArray(x.Others.Select(e => (JsonNode?)new JsonObject
                    { ["sender"] = e.Sender.ToString(), ["value"] = N(e.Value), ["raw"] = N(e.Raw) }).ToArray()),
            }).ToArray()),
            ["logit_lens"] = new JsonObject { ["clean"] = Lens(r.LogitLens), ["corrupted"] = Lens(r.CorruptedLogitLens) },
            ["direct_logit_attribution"] = new JsonObject
            {
                ["logit_diff"] = N(dla.LogitDiff), ["sum"] = N(dla.Sum),
                ["parts"] = new JsonArray(dla.Parts.Select(x => (JsonNode?)new JsonObject
                {
                    ["name"] = x.Name, ["layer"] = x.Layer, ["head"] = x.Head, ["value"] = N(x.Value),
                }).ToArray()),
                ["head_grid"] = Nested(headGrid, [c.NLayers, c.NHeads]),
            },
            ["timings"] = new JsonObject
            {
                ["exact_seconds"] = r.ExactSeconds, ["attribution_seconds"] = r.AttributionSeconds, ["path_seconds"] = r.PathSeconds,
                ["analysis_seconds"] = r.Seconds,
            },
            ["plots"] = new JsonArray(plots.Select(x => (JsonNode?)x.FileName).ToArray()),
        };
    }

    /// <summary>
    /// One grid. Its "clean" and "corrupted" are the metrics of the pairs' clean and corrupted prompts, as the top-level
    /// clean_metric and corrupted_metric: under noising the grid was run on the swapped pairs (<see cref="PatchPrompts.Swapped"/>),
    /// so its own Clean (the patches' source) is the corrupted prompts' run and its Corrupted (the run patched into) the clean one.
    /// </summary>
    public static JsonObject Grid(PatchGrid g, bool noising) => new()
    {
        ["name"] = g.Name, ["method"] = g.Method,
        ["axes"] = new JsonArray(g.Axes.Select(a => (JsonNode?)a).ToArray()),
        ["shape"] = Ints(g.Shape),
        ["clean"] = N(noising ? g.Corrupted : g.Clean), ["corrupted"] = N(noising ? g.Clean : g.Corrupted), ["seconds"] = g.Seconds,
        ["values"] = Nested(g.Values, g.Shape), ["raw"] = Nested(g.Raw, g.Shape),
    };

    private static JsonArray Lens(IReadOnlyList<LogitLensLayer> rows) => new(rows.Select(x => (JsonNode?)new JsonObject
    {
        ["name"] = x.Name, ["target_loss"] = N(x.TargetLoss), ["answer_logit"] = N(x.AnswerLogit), ["logit_diff"] = N(x.LogitDiff),
        ["sequence_loss"] = N(x.SequenceLoss),
    }).ToArray());

    /// <summary>A row-major array as nested JSON arrays of the shape.</summary>
    public static JsonArray Nested(double[] v, int[] shape)
    {
        JsonArray Level(int axis, int offset, int stride)
        {
            var a = new JsonArray();
            int inner = stride / shape[axis];
            for (int i = 0; i < shape[axis]; i++)
                a.Add(axis == shape.Length - 1 ? N(v[offset + i]) : Level(axis + 1, offset + i * inner, inner));
            return a;
        }
        return Level(0, 0, v.Length);
    }

    private static JsonArray Ints(int[] v) => new(v.Select(x => (JsonNode?)x).ToArray());

}
