using System.Numerics.Tensors;

namespace MiniGpt.Layers;

/// <summary>The tanh approximation of GELU (TransformerLens "gelu_new", GPT-2's activation).</summary>
public static class Gelu
{
    private const float C = 0.7978845608028654f; // √(2/π)
    private const float A = 0.044715f;

    // y = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
    public static void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        TensorPrimitives.Multiply(x, x, y);
        TensorPrimitives.Multiply(y, x, y);                 // x³
        TensorPrimitives.FusedMultiplyAdd(y, A, x, y);      // x + A·x³
        TensorPrimitives.Multiply(y, C, y);
        TensorPrimitives.Tanh(y, y);                        // t
        TensorPrimitives.Add(y, 1f, y);
        TensorPrimitives.Multiply(y, x, y);
        TensorPrimitives.Multiply(y, 0.5f, y);              // ½·x·(1+t)
    }

    // differentiates: y = ½·x·(1 + t),  t = tanh(u),  u = √(2/π)·(x + 0.044715·x³)
    //   dy/dx = ½·(1 + t) + ½·x·(1 - t²)·√(2/π)·(1 + 3·0.044715·x²)
    // dx (+)= dy · dy/dx; tScratch [len] receives t.
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, Span<float> tScratch, bool accumulate)
    {
        var t = tScratch[..x.Length];
        TensorPrimitives.Multiply(x, x, t);
        TensorPrimitives.Multiply(t, x, t);
        TensorPrimitives.FusedMultiplyAdd(t, A, x, t);
        TensorPrimitives.Multiply(t, C, t);
        TensorPrimitives.Tanh(t, t);
        for (int i = 0; i < x.Length; i++)
        {
            float xi = x[i], ti = t[i];
            float d = 0.5f * (1f + ti) + 0.5f * xi * (1f - ti * ti) * C * (1f + 3f * A * xi * xi);
            dx[i] = accumulate ? dx[i] + dy[i] * d : dy[i] * d;
        }
    }
}
