using System.Numerics.Tensors;

namespace MiniGpt.Layers;

/// <summary>
/// LayerNorm over the last dimension, eps 1e-5, biased variance (as PyTorch and TransformerLens).
/// With empty w and b it is TransformerLens's "LNPre" (normalise only), used once w and b are folded
/// into the weights that read its output.
/// </summary>
public static class LayerNorm
{
    public const float Eps = 1e-5f;

    // x [N,C] → y [N,C] = (x - μ)·rstd·w + b, with μ = mean(x), rstd = 1/√(mean((x-μ)²) + eps) saved per row [N]
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b,
        Span<float> y, Span<float> mean, Span<float> rstd, int N, int C)
    {
        for (int n = 0; n < N; n++)
        {
            var xr = x.Slice(n * C, C);
            var yr = y.Slice(n * C, C);
            float mu = TensorPrimitives.Sum(xr) / C;
            TensorPrimitives.Subtract(xr, mu, yr);                 // y = x - μ
            float var = TensorPrimitives.SumOfSquares(yr) / C;      // biased variance
            float rs = 1f / MathF.Sqrt(var + Eps);
            TensorPrimitives.Multiply(yr, rs, yr);                  // x̂
            if (!w.IsEmpty) TensorPrimitives.FusedMultiplyAdd(yr, w, b, yr); // x̂·w + b
            mean[n] = mu;
            rstd[n] = rs;
        }
    }

    // differentiates: y = (x - μ)·rstd·w + b
    //   dw += Σ_n dy·x̂,  db += Σ_n dy
    //   dx += rstd·(g - mean(g) - x̂·mean(g·x̂)),  g = dy·w
    // scratch [C] holds x̂ then g for one row.
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dw, Span<float> db, Span<float> xhat, Span<float> g, int N, int C)
    {
        xhat = xhat[..C];
        g = g[..C];
        for (int n = 0; n < N; n++)
        {
            var xr = x.Slice(n * C, C);
            var dyr = dy.Slice(n * C, C);
            var dxr = dx.Slice(n * C, C);
            TensorPrimitives.Subtract(xr, mean[n], xhat);
            TensorPrimitives.Multiply(xhat, rstd[n], xhat);
            if (w.IsEmpty) dyr.CopyTo(g); // LNPre: no affine part
            else
            {
                TensorPrimitives.FusedMultiplyAdd(dyr, xhat, dw, dw);
                TensorPrimitives.Add(db, dyr, db);
                TensorPrimitives.Multiply(dyr, w, g);
            }
            float meanG = TensorPrimitives.Sum(g) / C;
            float meanGx = TensorPrimitives.Dot(g, xhat) / C;
            // dx += rstd·(g - meanG - x̂·meanGx)
            TensorPrimitives.MultiplyAdd(xhat, -meanGx, g, g);
            TensorPrimitives.Subtract(g, meanG, g);
            TensorPrimitives.MultiplyAdd(g, rstd[n], dxr, dxr);
        }
    }
}
