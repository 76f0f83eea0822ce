using System.Buffers.Binary;
using MiniGpt.Model;

namespace MiniGpt.Checkpoints;

/// <summary>
/// llm.c's GPT-2 checkpoint (gpt2_124M.bin as train_gpt2.py writes it, read by train_gpt2.c's gpt2_build_from_checkpoint):
/// a header of 256 int32 — [0] magic 20240326, [1] version (3: float32), [2] max_seq_len, [3] vocab_size, [4] num_layers,
/// [5] num_heads, [6] channels, [7] padded_vocab_size (50304 for GPT-2) — then the float32 parameters in this order,
/// each stacked over layers, weights in PyTorch's Linear layout [out, in]:
///   wte [Vp, C], wpe [maxT, C], ln1w [L, C], ln1b [L, C], qkvw [L, 3C, C], qkvb [L, 3C], attprojw [L, C, C], attprojb [L, C],
///   ln2w [L, C], ln2b [L, C], fcw [L, 4C, C], fcb [L, 4C], fcprojw [L, C, 4C], fcprojb [L, C], lnfw [C], lnfb [C].
/// Converted on load to TransformerLens names; the padding rows of wte (V … Vp−1) are dropped, W_U = wte[:V]ᵀ.
/// </summary>
public static class LlmcGpt2
{
    public const int Magic = 20240326, HeaderInts = 256;

    /// <summary>Whether path starts with llm.c's model header (a .bin of any name).</summary>
    public static bool Is(string path)
    {
        if (!File.Exists(path) || new FileInfo(path).Length < 8) return false;
        using var fs = File.OpenRead(path);
        Span<byte> b = stackalloc byte[4];
        fs.ReadExactly(b);
        return BinaryPrimitives.ReadInt32LittleEndian(b) == Magic;
    }

    public static Checkpoint.Loaded Load(string path, Layers.IKernels? kernels = null)
    {
        using var fs = File.OpenRead(path);
        long size = fs.Length;
        if (size < HeaderInts * 4) throw new UserError($"'{path}' is {size} bytes, shorter than llm.c's 1,024-byte header: the file is truncated");
        var header = new byte[HeaderInts * 4];
        fs.ReadExactly(header);
        int H(int i) => BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4 * i));
        if (H(0) != Magic) throw new UserError($"'{path}' does not start with llm.c's magic number {Magic}: it is not a llm.c GPT-2 checkpoint");
        if (H(1) != 3)
            throw new UserError($"'{path}' is llm.c checkpoint version {H(1)}; MiniGpt reads version 3 (float32): write it with train_gpt2.py's float32 export");
        int maxT = H(2), V = H(3), L = H(4), NH = H(5), C = H(6), Vp = H(7);
        if (maxT < 1 || V < 1 || L < 0 || NH < 1 || C < 1 || Vp < V || C % NH != 0)
            throw new UserError($"'{path}': its header (max_seq_len {maxT}, vocab {V}, padded vocab {Vp}, layers {L}, heads {NH}, channels {C}) is not a GPT-2 shape: the file is damaged");
        // the parameter count the header implies, checked against the file's length before anything is allocated
        long c = C, l = L;
        long count = Vp * c + maxT * c + l * (c + c + 3 * c * c + 3 * c + c * c + c + c + c + 4 * c * c + 4 * c + 4 * c * c + c) + c + c;
        long expected = HeaderInts * 4L + 4 * count;
        if (size != expected)
            throw new UserError($"'{path}' is {size:N0} bytes but its header implies {expected:N0} ({count:N0} float32 parameters): the file is {(size < expected ? "truncated" : "longer than its header says")}");

        var cfg = new ModelConfig
        {
            NLayers = L, DModel = C, NHeads = NH, DHead = C / NH, DMlp = 4 * C, NCtx = maxT, DVocab = V,
            AttnOnly = false, NormalizationType = "LN", ActFn = "gelu_new",
        }.Validate();
        var model = new GptModel(cfg, kernels);
        var p = model.Params;
        var reader = new BinaryReader(fs);
        float[] Next(long n)
        {
            var a = new float[n];
            var bytes = reader.ReadBytes(checked((int)(4 * n)));
            for (long i = 0; i < n; i++) a[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(4 * i)));
            return a;
        }
        int D = C, dh = C / NH, M = 4 * C;
        var wte = Next((long)Vp * C);
        wte.AsSpan(0, V * D).CopyTo(p["embed.W_E"].Span);
        var wU = p["unembed.W_U"].Span;
        for (int v = 0; v < V; v++)
            for (int d = 0; d < D; d++) wU[d * V + v] = wte[(long)v * D + d];
        p["unembed.b_U"].Span.Clear();
        Next((long)maxT * C).CopyTo(p["pos_embed.W_pos"].Span);
        float[] ln1w = Next(l * c), ln1b = Next(l * c), qkvw = Next(l * 3 * c * c), qkvb = Next(l * 3 * c),
            attw = Next(l * c * c), attb = Next(l * c), ln2w = Next(l * c), ln2b = Next(l * c),
            fcw = Next(l * 4 * c * c), fcb = Next(l * 4 * c), fcpw = Next(l * 4 * c * c), fcpb = Next(l * c);
        for (int layer = 0; layer < L; layer++)
        {
            string b = $"blocks.{layer}.";
            ln1w.AsSpan(layer * D, D).CopyTo(p[b + "ln1.w"].Span); ln1b.AsSpan(layer * D, D).CopyTo(p[b + "ln1.b"].Span);
            ln2w.AsSpan(layer * D, D).CopyTo(p[b + "ln2.w"].Span); ln2b.AsSpan(layer * D, D).CopyTo(p[b + "ln2.b"].Span);
            // qkvw [3C, C] (out, in): row part·C + h·dh + e is the output column of W_{Q,K,V}[h, :, e]
            string[] w = ["attn.W_Q", "attn.W_K", "attn.W_V"], bias = ["attn.b_Q", "attn.b_K", "attn.b_V"];
            long q0 = (long)layer * 3 * D * D;
            for (int part = 0; part < 3; part++)
            {
                var dst = p[b + w[part]].Span; var dstB = p[b + bias[part]].Span;
                for (int h = 0; h < NH; h++)
                    for (int e = 0; e < dh; e++)
                    {
                        int row = part * D + h * dh + e;
                        for (int d = 0; d < D; d++) dst[(h * D + d) * dh + e] = qkvw[q0 + (long)row * D + d];
                        dstB[h * dh + e] = qkvb[(long)layer * 3 * D + row];
                    }
            }
            // attprojw [C, C] (out d, in h·dh + e) → W_O[h, e, d]
            var wO = p[b + "attn.W_O"].Span;
            for (int d = 0; d < D; d++)
                for (int i = 0; i < D; i++) wO[i * D + d] = attw[(long)layer * D * D + (long)d * D + i];
            attb.AsSpan(layer * D, D).CopyTo(p[b + "attn.b_O"].Span);
            // fcw [4C, C] (out m, in d) → W_in[d, m];  fcprojw [C, 4C] (out d, in m) → W_out[m, d]
            var wIn = p[b + "mlp.W_in"].Span; var wOut = p[b + "mlp.W_out"].Span;
            long f0 = (long)layer * M * D;
            for (int m = 0; m < M; m++)
                for (int d = 0; d < D; d++)
                {
                    wIn[d * M + m] = fcw[f0 + (long)m * D + d];
                    wOut[m * D + d] = fcpw[f0 + (long)d * M + m];
                }
            fcb.AsSpan(layer * M, M).CopyTo(p[b + "mlp.b_in"].Span);
            fcpb.AsSpan(layer * D, D).CopyTo(p[b + "mlp.b_out"].Span);
        }
        Next(c).CopyTo(p["ln_final.w"].Span);
        Next(c).CopyTo(p["ln_final.b"].Span);
        string? tokenizer = V == 50257 ? Data.TiktokenTokens.Full("gpt2").ToJson() : null;
        return new Checkpoint.Loaded(model, tokenizer, null); // not a safetensors file: no metadata to carry
    }
}
