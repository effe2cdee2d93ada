using System.Buffers.Binary;
using System.Globalization;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Apache.Arrow.Types;
using Monitoring.Stream.Arrow;

namespace Monitoring.Stream.Store;

/// <summary>
/// Checks the files of the store folder when it opens: a published file must end with a readable Arrow
/// footer and carry the window schema; a partial file gives back the batches it holds completely.
/// </summary>
internal static class ArrowFileCheck
{
    // An Arrow IPC file: "ARROW1" + 2 bytes of padding, the stream messages, the footer, its int32 length, "ARROW1".
    private static ReadOnlySpan<byte> Magic => "ARROW1"u8;

    private const int HeaderLength = 8;
    private const int TrailerLength = 10; // footer length (int32) + magic

    private static readonly Schema s_expected = WindowSchema.Create("check");

    /// <summary>What is wrong with the published file at <paramref name="path"/>, or null when it is a sound window file.</summary>
    public static string? Problem(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long length = stream.Length;
        if (length < HeaderLength + TrailerLength)
        {
            return string.Create(CultureInfo.InvariantCulture, $"too short for an Arrow file ({length} bytes)");
        }

        Span<byte> head = stackalloc byte[HeaderLength];
        stream.ReadExactly(head);
        if (!head[..Magic.Length].SequenceEqual(Magic))
        {
            return "not an Arrow file: no ARROW1 magic at the start";
        }

        Span<byte> trailer = stackalloc byte[TrailerLength];
        stream.Position = length - TrailerLength;
        stream.ReadExactly(trailer);
        if (!trailer[4..].SequenceEqual(Magic))
        {
            return "no Arrow footer: the file was cut short or never closed";
        }

        int footerLength = BinaryPrimitives.ReadInt32LittleEndian(trailer);
        if (footerLength <= 0 || footerLength > length - HeaderLength - TrailerLength)
        {
            return string.Create(CultureInfo.InvariantCulture, $"footer length {footerLength} out of range for a file of {length} bytes");
        }

        stream.Position = 0;
        try
        {
            using var reader = new ArrowFileReader(stream, leaveOpen: true);
            int batches = reader.RecordBatchCountAsync().AsTask().GetAwaiter().GetResult();
            string? schemaProblem = SchemaProblem(reader.Schema);
            if (schemaProblem is not null)
            {
                return schemaProblem;
            }

            if (batches > 0)
            {
                // The footer's last block must point at a readable batch within the file.
                using RecordBatch last = reader.ReadRecordBatchAsync(batches - 1, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            }
        }
#pragma warning disable CA1031 // Whatever the reader throws on, the file is unreadable: that is the finding.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return $"unreadable Arrow footer or batch ({e.GetType().Name}: {e.Message})";
        }

        return null;
    }

    /// <summary>Why <paramref name="schema"/> is not the window schema this build writes, or null when it is.</summary>
    public static string? SchemaProblem(Schema schema)
    {
        string? version = null;
        if (schema.Metadata is null || !schema.Metadata.TryGetValue(WindowSchema.VersionKey, out version) || version != WindowSchema.Version)
        {
            return $"schema version '{version ?? "(none)"}' is not {WindowSchema.Version}";
        }

        if (schema.FieldsList.Count != s_expected.FieldsList.Count)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{schema.FieldsList.Count} columns, the window schema has {s_expected.FieldsList.Count}");
        }

        for (int i = 0; i < schema.FieldsList.Count; i++)
        {
            Field actual = schema.FieldsList[i];
            Field expected = s_expected.FieldsList[i];
            if (actual.Name != expected.Name || !SameType(actual.DataType, expected.DataType))
            {
                return string.Create(CultureInfo.InvariantCulture,
                    $"column {i} is '{actual.Name}' of type {actual.DataType.Name}, the window schema has '{expected.Name}' of type {expected.DataType.Name}");
            }
        }

        return null;
    }

    private static bool SameType(IArrowType actual, IArrowType expected) => (actual, expected) switch
    {
        (TimestampType a, TimestampType e) => a.Unit == e.Unit && a.Timezone == e.Timezone,
        (MapType a, MapType e) => SameType(a.KeyField.DataType, e.KeyField.DataType) && SameType(a.ValueField.DataType, e.ValueField.DataType),
        _ => actual.TypeId == expected.TypeId,
    };

    /// <summary>
    /// Reads the record batches that a file being written holds completely (a crash or a failed write
    /// leaves a torn tail, which is ignored), with the file's schema; none when it holds no whole batch.
    /// </summary>
    public static (Schema? Schema, List<RecordBatch> Batches) CompleteBatches(string path)
    {
        var batches = new List<RecordBatch>();
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        Span<byte> head = stackalloc byte[HeaderLength];
        if (stream.Length < HeaderLength || stream.ReadAtLeast(head, HeaderLength, throwOnEndOfStream: false) < HeaderLength ||
            !head[..Magic.Length].SequenceEqual(Magic))
        {
            return (null, batches);
        }

        // After the header, an Arrow file is an Arrow stream: schema message, then one message per batch.
        Schema? schema = null;
        try
        {
            using var reader = new ArrowStreamReader(stream, leaveOpen: true);
            schema = reader.Schema;
            while (reader.ReadNextRecordBatch() is { } batch)
            {
                batches.Add(batch);
            }
        }
#pragma warning disable CA1031 // The torn tail of an interrupted write throws in the reader: the batches before it are kept.
        catch (Exception)
#pragma warning restore CA1031
        {
        }

        return (schema, batches);
    }

    /// <summary>
    /// Turns a file being written into a complete Arrow file in place: cuts off any torn tail and appends
    /// the end-of-stream marker and the footer that an Arrow file writer gives for the whole batches the
    /// file holds, once that writer has been seen to re-create the file's bytes exactly. Needs only the
    /// footer's few hundred bytes of free space.
    /// </summary>
    /// <returns>
    /// The batches of the finished file; 0 when it holds no whole batch (left untouched); -1 when the
    /// batches as read back, written again, are not the file's own bytes (left untouched: it must be
    /// copied instead).
    /// </returns>
    public static int FinishInPlace(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, 1 << 16);
        using var original = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 16);
        Span<byte> head = stackalloc byte[HeaderLength];
        if (file.Length < HeaderLength || file.ReadAtLeast(head, HeaderLength, throwOnEndOfStream: false) < HeaderLength ||
            !head[..Magic.Length].SequenceEqual(Magic))
        {
            return 0;
        }

        using var probe = new FooterProbeStream(original);
        ArrowFileWriter? writer = null;
        int batches = 0;
        long wholeLength = 0;
        try
        {
            using var reader = new ArrowStreamReader(file, leaveOpen: true);
            Schema? schema;
            try
            {
                schema = reader.Schema;
            }
#pragma warning disable CA1031 // A file cut inside its schema message holds no batch.
            catch (Exception)
#pragma warning restore CA1031
            {
                return 0;
            }

            if (schema is null)
            {
                return 0;
            }

            writer = new ArrowFileWriter(probe, schema, leaveOpen: true);
            while (true)
            {
                RecordBatch? batch;
                try
                {
                    batch = reader.ReadNextRecordBatch();
                }
#pragma warning disable CA1031 // The torn tail of an interrupted write: the batches before it are kept.
                catch (Exception)
#pragma warning restore CA1031
                {
                    break;
                }

                if (batch is null)
                {
                    break;
                }

                using (batch)
                {
                    long end = file.Position;
                    writer.WriteRecordBatch(batch);
                    if (probe.Differs || probe.Position != end)
                    {
                        // Written again, the file would not be the same bytes: a footer computed this
                        // way might not describe it.
                        return -1;
                    }
                }

                wholeLength = file.Position;
                batches++;
            }

            if (batches == 0)
            {
                return 0;
            }

            probe.Capture = true;
            writer.WriteEnd();
        }
        finally
        {
            writer?.Dispose();
        }

        file.SetLength(wholeLength);
        file.Position = wholeLength;
        file.Write(probe.Captured);
        file.Flush(flushToDisk: true);
        return batches;
    }
}
