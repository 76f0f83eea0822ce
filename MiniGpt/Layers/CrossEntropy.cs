using System.Numerics.Tensors;

namespace MiniGpt.Layers;

/// <summary>Softmax and next-token cross-entropy fused, so the [N, V] probabilities are never stored.</summary>
public static class CrossEntropy
{
    // logits [N,V], targets [N] → losses [N] = logsumexp(logits[n]) − logits[n, target[n]]; returns Σ_n losses
    public static double Forward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> losses, int N, int V)
    {
        double total = 0;
        for (int n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            float max = TensorPrimitives.Max(row);
            double sum = 0;
            for (int i = 0; i < V; i++) sum += MathF.Exp(row[i] - max);
            float loss = (float)(Math.Log(sum) + max - row[targets[n]]);
            losses[n] = loss;
            total += loss;
        }
        return total;
    }

    // differentiates: loss = scale·Σ_n (logsumexp(logits[n]) − logits[n, y_n])
    //   dlogits[n] = scale·(softmax(logits[n]) − onehot(y_n))
    public static void Backward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, float scale, int N, int V)
    {
        for (int n = 0; n < N; n++)
        {
            var d = dLogits.Slice(n * V, V);
            Softmax.Forward(logits.Slice(n * V, V), d);
            d[targets[n]] -= 1f;
            TensorPrimitives.Multiply(d, scale, d);
        }
    }
}
