using System.IO.MemoryMappedFiles;

namespace MiniGpt.Data;

/// <summary>
/// A prepared token file read through a memory map: the OS pages in the windows a batch touches, so
/// a corpus larger than RAM trains, and copying a window out allocates nothing.
/// </summary>
public sealed unsafe class MappedTokens : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly int _width;

    public long Length { get; }
    public string Path { get; }

    public MappedTokens(string path, PreparedMeta meta)
    {
        TokenFile.CheckExists(path);
        Path = path;
        _width = meta.BytesPerToken;
        long bytes = new FileInfo(path).Length;
        if (bytes % _width != 0)
            throw new UserError($"token file '{path}' has {bytes} bytes, not a whole number of {meta.Dtype} tokens as its meta.json says: prepare the data again");
        Length = bytes / _width;
        if (Length == 0) throw new UserError($"token file '{path}' is empty: prepare more text");
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
        Vocab = meta.VocabSize;
    }

    public int Vocab { get; }

    /// <summary>Tokens [start, start + dst.Length) into dst, each checked against the vocabulary (a damaged file must not index past W_E).</summary>
    public void Copy(long start, Span<int> dst)
    {
        if (_width == 2)
        {
            var src = new ReadOnlySpan<ushort>((ushort*)_base + start, dst.Length);
            for (int i = 0; i < dst.Length; i++) dst[i] = src[i];
        }
        else
        {
            var src = new ReadOnlySpan<uint>((uint*)_base + start, dst.Length);
            for (int i = 0; i < dst.Length; i++) dst[i] = (int)Math.Min(src[i], int.MaxValue);
        }
        foreach (int id in dst)
            if ((uint)id >= (uint)Vocab)
                throw new UserError($"token file '{Path}' holds token {id}, beyond its vocabulary of {Vocab}: the file is damaged; prepare the data again");
    }

    public int[] ReadAll(long max = long.MaxValue)
    {
        long n = Math.Min(Length, max);
        if (n > Array.MaxLength) throw new UserError($"token file '{Path}' is too large to load whole ({n:N0} tokens)");
        var a = new int[n];
        Copy(0, a);
        return a;
    }

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}

/// <summary>Random windows from a mapped train file; validation from the first windows of a mapped val file.</summary>
public sealed class MappedWindows(MappedTokens train, MappedTokens val, string name) : IBatchSource
{
    public void Sample(ref Rng rng, Span<int> inputs, Span<int> targets, int B, int T)
    {
        long n = train.Length - T;
        for (int b = 0; b < B; b++)
        {
            // the same draw as TokenWindows below 2^31 tokens, so prepared files train exactly as the text does
            long start = n <= int.MaxValue ? rng.NextInt((int)n) : (long)(rng.NextU64() % (ulong)n);
            train.Copy(start, inputs.Slice(b * T, T));
            train.Copy(start + 1, targets.Slice(b * T, T));
        }
    }

    public IReadOnlyList<EvalBatch> ValidationBatches(int B, int T, int maxBatches) =>
        Windows.Consecutive(val.ReadAll((long)maxBatches * B * T + 1), B, T, maxBatches);

    public string Describe() => $"{name}: {train.Length:N0} train / {val.Length:N0} val tokens (memory-mapped)";
}
