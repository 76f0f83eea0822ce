using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace MiniGpt.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorEntry(string Name, string DType, int[] Shape, long Begin, long End)
{
    public long Count => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>
/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header naming
/// each tensor's dtype, shape and byte range, an optional "__metadata__" map of strings, then the data.
/// The reader distrusts every number in the header: lengths and offsets are checked against the real
/// file size before anything is allocated or read.
/// </summary>
public sealed class SafeTensorsFile
{
    public const long MaxHeaderBytes = 100_000_000;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyDictionary<string, SafeTensorEntry> Entries { get; }
    private readonly long _dataStart;

    private SafeTensorsFile(string path, Dictionary<string, string> meta, Dictionary<string, SafeTensorEntry> entries, long dataStart)
    {
        Path = path; Metadata = meta; Entries = entries; _dataStart = dataStart;
    }

    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new UserError($"checkpoint '{path}' does not exist: check the path");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long size = fs.Length;
        string what = $"'{path}' is not a safetensors checkpoint";
        if (size < 8) throw new UserError($"{what}: it is {size} bytes, too short for a header (truncated?)");
        Span<byte> lenBytes = stackalloc byte[8];
        fs.ReadExactly(lenBytes);
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLen < 2 || headerLen > (ulong)(size - 8) || headerLen > MaxHeaderBytes)
            throw new UserError($"{what}: its header claims {headerLen} bytes but the file has {size - 8} after the length (truncated or foreign file)");
        var header = new byte[headerLen];
        fs.ReadExactly(header);
        long dataLen = size - 8 - (long)headerLen;

        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        var entries = new Dictionary<string, SafeTensorEntry>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new UserError($"{what}: the header is not a JSON object");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw new UserError($"{what}: __metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw new UserError($"{what}: metadata '{m.Name}' is not a string");
                        meta[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                if (entries.ContainsKey(prop.Name)) throw new UserError($"{what}: tensor '{prop.Name}' appears twice");
                entries[prop.Name] = ParseEntry(prop, dataLen, what);
            }
        }
        catch (JsonException e) { throw new UserError($"{what}: its header is not valid JSON ({FirstLine(e.Message)})"); }
        catch (InvalidOperationException e) { throw new UserError($"{what}: malformed header ({FirstLine(e.Message)})"); }
        return new SafeTensorsFile(path, meta, entries, 8 + (long)headerLen);
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();

    private static SafeTensorEntry ParseEntry(JsonProperty prop, long dataLen, string what)
    {
        var v = prop.Value;
        string name = prop.Name;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new UserError($"{what}: tensor '{name}' lacks dtype, shape or data_offsets");
        if (sh.GetArrayLength() > 8) throw new UserError($"{what}: tensor '{name}' has {sh.GetArrayLength()} dimensions");
        var shape = new int[sh.GetArrayLength()];
        long count = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int di) || di < 0)
                throw new UserError($"{what}: tensor '{name}' has a bad dimension {d.GetRawText()}");
            shape[i++] = di;
            count = di == 0 ? 0 : (count > long.MaxValue / di ? long.MaxValue : count * di);
        }
        if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin || end > dataLen)
            throw new UserError($"{what}: tensor '{name}' has data offsets {off.GetRawText()} outside the {dataLen}-byte data section (truncated?)");
        string dtype = dt.GetString()!;
        int elem = dtype switch { "F32" or "I32" or "U32" => 4, "F16" or "BF16" or "I16" or "U16" => 2, "F64" or "I64" or "U64" => 8, "I8" or "U8" or "BOOL" => 1, _ => 0 };
        if (elem == 0) throw new UserError($"{what}: tensor '{name}' has unknown dtype {dtype}");
        if (count > long.MaxValue / elem || count * elem != end - begin)
            throw new UserError($"{what}: tensor '{name}' of shape [{string.Join(", ", shape)}] {dtype} needs {(count > long.MaxValue / elem ? "too many" : (count * elem).ToString())} bytes but its offsets span {end - begin}");
        return new SafeTensorEntry(name, dtype, shape, begin, end);
    }

    /// <summary>Reads an F32 tensor into dst (whose length must match).</summary>
    public void ReadF32(string name, Span<float> dst)
    {
        var e = Entries[name];
        if (e.DType != "F32")
            throw new UserError($"tensor '{name}' in '{Path}' is {e.DType}; MiniGpt reads F32: convert the checkpoint to float32 (e.g. model.float()) and save again");
        if (e.Count != dst.Length) throw new UserError($"tensor '{name}' in '{Path}' has {e.Count} values, expected {dst.Length}");
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        fs.Seek(_dataStart + e.Begin, SeekOrigin.Begin);
        fs.ReadExactly(MemoryMarshal.AsBytes(dst));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
    }

    /// <summary>
    /// Writes tensors and metadata to path atomically: the bytes go to a temporary file beside it,
    /// are flushed to disk, and the file is renamed over path, so path is either the old file or the
    /// whole new one, never a torn mix.
    /// </summary>
    public static void Write(string path, IReadOnlyList<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, shape, data) in tensors)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (int d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += (long)data.Length * sizeof(float);
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');

        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)ms.Length);
                fs.Write(len);
                ms.Position = 0;
                ms.CopyTo(fs);
                foreach (var (_, _, data) in tensors) fs.Write(MemoryMarshal.AsBytes(data.Span));
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }
}
