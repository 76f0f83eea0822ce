namespace MiniGpt.Patching;

/// <summary>
/// A number read off the logits [B, T, d_vocab] of a run of the prompts, and its gradient with respect to
/// those logits (what attribution patching backpropagates). Both are means over every target of every row,
/// so a metric does not grow with the batch.
/// </summary>
public abstract class PatchMetric
{
    /// <summary>snake_case, as in patch.json: "logit_diff", "answer_loss".</summary>
    public abstract string Name { get; }

    public abstract double Value(ReadOnlySpan<float> logits, PatchPrompts prompts, int vocab);

    /// <summary>dLogits = ∂Value/∂logits, every element written (zeros where the metric does not read).</summary>
    public abstract void Gradient(ReadOnlySpan<float> logits, PatchPrompts prompts, int vocab, Span<float> dLogits);

    /// <summary>mean over targets of logits[pos, answer] − logits[pos, wrong] (the IOI paper's logit difference).</summary>
    public static PatchMetric LogitDiff { get; } = new LogitDiffMetric();

    /// <summary>mean over targets of −log softmax(logits[pos])[answer], the next-token loss of the answer.</summary>
    public static PatchMetric AnswerLoss { get; } = new AnswerLossMetric();

    /// <summary>The metric of a name (logit_diff or answer_loss), or a UserError listing them.</summary>
    public static PatchMetric Named(string name) => name switch
    {
        "logit_diff" => LogitDiff,
        "answer_loss" => AnswerLoss,
        _ => throw new UserError($"unknown metric '{name}': use logit_diff or answer_loss"),
    };

    private sealed class LogitDiffMetric : PatchMetric
    {
        public override string Name => "logit_diff";

        public override double Value(ReadOnlySpan<float> logits, PatchPrompts p, int V)
        {
            double sum = 0;
            for (int b = 0; b < p.Batch; b++)
                foreach (var t in p.Targets[b])
                {
                    long row = ((long)b * p.SeqLen + t.Position) * V;
                    sum += (double)logits[(int)(row + t.Answer)] - logits[(int)(row + t.Wrong)];
                }
            return sum / p.TargetCount;
        }

        // ∂/∂logits[pos, answer] = +1/n, ∂/∂logits[pos, wrong] = −1/n
        public override void Gradient(ReadOnlySpan<float> logits, PatchPrompts p, int V, Span<float> d)
        {
            d.Clear();
            float w = 1f / p.TargetCount;
            for (int b = 0; b < p.Batch; b++)
                foreach (var t in p.Targets[b])
                {
                    int row = (b * p.SeqLen + t.Position) * V;
                    d[row + t.Answer] += w;
                    d[row + t.Wrong] -= w;
                }
        }
    }

    private sealed class AnswerLossMetric : PatchMetric
    {
        public override string Name => "answer_loss";

        public override double Value(ReadOnlySpan<float> logits, PatchPrompts p, int V)
        {
            double sum = 0;
            for (int b = 0; b < p.Batch; b++)
                foreach (var t in p.Targets[b])
                {
                    var row = logits.Slice((b * p.SeqLen + t.Position) * V, V);
                    sum += LogSumExp(row) - row[t.Answer];
                }
            return sum / p.TargetCount;
        }

        // ∂(logsumexp(l) − l_a)/∂l_j = softmax(l)_j − [j = a]
        public override void Gradient(ReadOnlySpan<float> logits, PatchPrompts p, int V, Span<float> d)
        {
            d.Clear();
            double w = 1.0 / p.TargetCount;
            for (int b = 0; b < p.Batch; b++)
                foreach (var t in p.Targets[b])
                {
                    int at = (b * p.SeqLen + t.Position) * V;
                    var row = logits.Slice(at, V);
                    double lse = LogSumExp(row);
                    for (int j = 0; j < V; j++) d[at + j] += (float)(w * Math.Exp(row[j] - lse));
                    d[at + t.Answer] -= (float)w;
                }
        }
    }

    /// <summary>log Σ exp(row), in double, shifted by the max.</summary>
    internal static double LogSumExp(ReadOnlySpan<float> row)
    {
        double max = double.NegativeInfinity;
        foreach (float x in row) max = Math.Max(max, x);
        double s = 0;
        foreach (float x in row) s += Math.Exp(x - max);
        return max + Math.Log(s);
    }
}
