using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Unicode;
using MessagePack;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Kafka.WireFormat;

/// <summary>
/// Decodes point messages (docs/wire-format.md, version 1) from untrusted bytes into a <see cref="PointWriter"/>.
/// A message is parsed and checked whole before any of its points is written, so a refused message
/// leaves nothing behind; inside a good message, points the writer refuses are counted there.
/// </summary>
/// <remarks>
/// Not thread-safe: one decoder per consuming thread. Every length a header claims is checked against the
/// limits and the bytes left before anything is sized from it. Series already seen are found by their
/// bytes in a cache of resolved ids, so decoding allocates nothing per point, nor per message once its
/// series are known.
/// </remarks>
public sealed class PointBatchDecoder
{
    private const int RecentTables = 16;
    private const int MaxRecentTableBytes = 64 * 1024;
    private readonly SeriesRegistry _registry;
    private readonly PointDecoderLimits _limits;
    private readonly MessagePackSecurity _security;
    private readonly ByteKeyTable<SeriesId> _cache = new();
    private readonly ByteKeyTable<int> _strings = new();
    private int[] _stringIds = new int[64];
    private int[] _keyIds = new int[16];
    private int _stringCount;
    private int[] _stringStart = new int[64];
    private int[] _stringLength = new int[64];
    private int[] _seriesFirst = new int[16];
    private int[] _seriesStrings = new int[64];
    private SeriesId[] _seriesIds = new SeriesId[16];
    private RejectedSeries?[] _seriesRejected = new RejectedSeries?[16];
    private DecodedPoint[] _points = new DecodedPoint[256];
    private long _reclaimedSeen;
    private int _tableStart, _tableEnd;
    private readonly RecentTable[] _recentTables = [.. Enumerable.Range(0, RecentTables).Select(_ => new RecentTable())];
    private int _nextRecentTable;
    private int _prepared;
    private bool _anyRejected;

    // The prepared message's string and series tables, copied (the message's memory may be reused once it is
    // prepared), to look its series up again if any series is reclaimed before its points are written.
    private byte[] _preparedTable = new byte[1024];
    private int _preparedTableOrigin;
    private int _preparedSeries;

    /// <summary>Creates a decoder that resolves series through <paramref name="registry"/>.</summary>
    public PointBatchDecoder(SeriesRegistry registry, PointDecoderLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(registry);
        _registry = registry;
        _limits = limits ?? new PointDecoderLimits();
        _limits.Validate();
        _security = MessagePackSecurity.UntrustedData.WithMaximumObjectGraphDepth(_limits.MaxDepth);
    }

    /// <summary>The limits this decoder enforces.</summary>
    public PointDecoderLimits Limits => _limits;

    /// <summary>Series ids the decoder remembers by their bytes.</summary>
    public int CachedSeries => _cache.Count;

    /// <summary>How many times a prepared message's series were looked up again while its points were written, a series having been reclaimed since.</summary>
    public long LookedUpAgain { get; private set; }

    /// <summary>Checks a message whole, then writes its points to <paramref name="writer"/>.</summary>
    /// <returns>The error that refused the whole message, or the points written and refused.</returns>
    public PointDecodeResult Decode(ReadOnlyMemory<byte> message, PointWriter writer) => Decode(message, writer, []);

    /// <summary>
    /// Like <see cref="Decode(ReadOnlyMemory{byte}, PointWriter)"/>, and adds each refused point to
    /// <paramref name="refusedByReason"/> at the index of its <see cref="RejectReason"/> (a span too short for a reason is skipped).
    /// </summary>
    /// <returns>The error that refused the whole message, or the points written and refused.</returns>
    public PointDecodeResult Decode(ReadOnlyMemory<byte> message, PointWriter writer, Span<int> refusedByReason)
    {
        ArgumentNullException.ThrowIfNull(writer);
        PointDecodeResult prepared = Prepare(message);
        return prepared.Succeeded ? prepared with { Refused = WritePrepared(writer, refusedByReason) } : prepared;
    }

    /// <summary>
    /// Checks a message whole and resolves its series, keeping its points in the decoder (nothing refers to
    /// <paramref name="message"/> afterwards, so its memory may be reused); <see cref="WritePrepared"/> writes them.
    /// </summary>
    internal PointDecodeResult Prepare(ReadOnlyMemory<byte> message)
    {
        _prepared = 0;
        PointDecodeResult parsed = Parse(message, out int points, out int seriesCount);
        if (!parsed.Succeeded)
        {
            return parsed;
        }

        PointDecodeError error = ResolveSeries(message.Span, seriesCount);
        if (error != PointDecodeError.None)
        {
            return new PointDecodeResult(error, 0, 0, -1);
        }

        KeepTable(message.Span, seriesCount);
        _prepared = points;
        return new PointDecodeResult(PointDecodeError.None, points, 0, -1);
    }

    /// <summary>
    /// Writes the points of the message last <see cref="Prepare"/>d (once); returns how many the writer refused. Nothing
    /// else may be parsed by this decoder in between (<see cref="Validate"/> included): the points and the tables'
    /// offsets a second lookup of the message's series reads are the last parse's.
    /// </summary>
    internal int WritePrepared(PointWriter writer, Span<int> refusedByReason)
    {
        int count = _prepared;
        _prepared = 0;
        return WritePoints(writer, count, refusedByReason);
    }

    /// <summary>Checks a message whole without writing it: the error a <see cref="Decode(ReadOnlyMemory{byte}, PointWriter)"/> would report before writing.</summary>
    public PointDecodeResult Validate(ReadOnlyMemory<byte> message) => Parse(message, out _, out _);

    private int WritePoints(PointWriter writer, int count, Span<int> refusedByReason)
    {
        if (!writer.EnterHeld())
        {
            return WriteToClosed(writer, count, refusedByReason);
        }

        try
        {
            return WriteHeld(writer, count, refusedByReason);
        }
        finally
        {
            writer.ExitHeld();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int WriteHeld(PointWriter writer, int count, Span<int> refusedByReason)
    {
        // PERF: the per-point loop is an array walk and one writer call, the writer's gate held for the whole message;
        // the series id was resolved once per series entry of the message, not per point. Each point checks, inside
        // the gate, that the registry reclaimed nothing since the ids were resolved (else they are looked up again):
        // so no point goes out under an id that the engine could retire before the point reaches its shard (it would
        // be refused as stale). Indexed without bounds checks: count <= points.Length (ParsePoints), every p.Series
        // was checked against the message's series count, <= _seriesIds.Length (ParseSeries), when it was read, and
        // ResolvePreparedAgain fills _seriesIds in place.
        ref DecodedPoint first = ref MemoryMarshal.GetArrayDataReference(_points);
        ref SeriesId ids = ref MemoryMarshal.GetArrayDataReference(_seriesIds);
        SeriesRegistry registry = _registry;

        // A message with a refused series compares the count with -1, never equal: its points take the slow path.
        long seen = _anyRejected ? -1 : _reclaimedSeen;
        int refused = 0;
        for (int i = 0; i < count; i++)
        {
            ref DecodedPoint p = ref Unsafe.Add(ref first, i);
            RejectReason reason;
            if (registry.Reclaimed == seen)
            {
                reason = writer.WriteHeld(Unsafe.Add(ref ids, p.Series), p.Value, p.TimestampUnixMs);
            }
            else
            {
                reason = WriteHeldSlow(writer, p.Series, p.Value, p.TimestampUnixMs);
                seen = _anyRejected ? -1 : _reclaimedSeen;
            }

            if (reason != RejectReason.None)
            {
                CountRefusal(reason, ref refused, refusedByReason);
            }
        }

        return refused;
    }

    /// <summary>One refused point: counted, and by its reason when the span has room for it.</summary>
    private static void CountRefusal(RejectReason reason, ref int refused, Span<int> refusedByReason)
    {
        refused++;
        if ((uint)reason < (uint)refusedByReason.Length)
        {
            refusedByReason[(int)reason]++;
        }
    }

    /// <summary>A point of a message with a refused series, or whose series were resolved before a reclaim; the writer's gate is held.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason WriteHeldSlow(PointWriter writer, int series, double value, long timestampUnixMs)
    {
        if (_registry.Reclaimed != _reclaimedSeen)
        {
            ResolvePreparedAgain();
        }

        RejectedSeries? bad = _seriesRejected[series];
        if (bad is null)
        {
            return writer.WriteHeld(_seriesIds[series], value, timestampUnixMs);
        }

        // Refused when the message was prepared: asked again per point, so that each refusal is counted under the source.
        RejectReason reason = _registry.TryGetOrAdd(bad.Metric, bad.Labels, out SeriesId id);
        if (reason != RejectReason.None)
        {
            writer.RefuseHeld(reason);
            return reason;
        }

        return writer.WriteHeld(id, value, timestampUnixMs);
    }

    /// <summary>Every point of the prepared message to a closed writer: each refused and counted by it.</summary>
    private int WriteToClosed(PointWriter writer, int count, Span<int> refusedByReason)
    {
        int refused = 0;
        for (int i = 0; i < count; i++)
        {
            ref DecodedPoint p = ref _points[i];
            RejectedSeries? bad = _seriesRejected[p.Series];
            RejectReason reason = bad is null
                ? writer.Write(_seriesIds[p.Series], p.Value, p.TimestampUnixMs)
                : writer.Write(bad.Metric, bad.Labels, p.Value, p.TimestampUnixMs);
            if (reason != RejectReason.None)
            {
                CountRefusal(reason, ref refused, refusedByReason);
            }
        }

        return refused;
    }

    /// <summary>
    /// Looks every series of the prepared message up again from the kept copy of its tables, after a reclaim: an id
    /// found before may name a series the engine has since unlisted (ids already written stay valid; the shard
    /// aggregates them under the old series until it retires it).
    /// </summary>
    private void ResolvePreparedAgain()
    {
        // The count first: a reclaim from here on is seen by the next point's check and looked up again then.
        _reclaimedSeen = _registry.Reclaimed;
        ClearCaches();
        ReadOnlySpan<byte> table = _preparedTable;
        bool anyRejected = false;
        for (int i = 0; i < _preparedSeries; i++)
        {
            (string metric, Label[] labels) = ReadSeries(table, _preparedTableOrigin, i);
            if (_registry.TryGetOrAdd(metric, labels, out SeriesId id) == RejectReason.None)
            {
                _seriesIds[i] = id;
                _seriesRejected[i] = null;
            }
            else
            {
                _seriesRejected[i] = new RejectedSeries(metric, labels);
                anyRejected = true;
            }
        }

        _anyRejected = anyRejected;
        LookedUpAgain++;
    }

    /// <summary>Copies the prepared message's string and series tables (all its series are made of).</summary>
    private void KeepTable(ReadOnlySpan<byte> bytes, int seriesCount)
    {
        ReadOnlySpan<byte> table = bytes[_tableStart.._tableEnd];
        if (table.Length > _preparedTable.Length)
        {
            _preparedTable = new byte[Math.Max(table.Length, Math.Min(_preparedTable.Length * 2, Array.MaxLength))];
        }

        table.CopyTo(_preparedTable);
        _preparedTableOrigin = _tableStart;
        _preparedSeries = seriesCount;
    }

    private PointDecodeResult Parse(ReadOnlyMemory<byte> message, out int points, out int seriesCount)
    {
        points = 0;
        seriesCount = 0;
        if (message.IsEmpty)
        {
            return Fail(PointDecodeError.Empty, 0);
        }

        if (message.Length > _limits.MaxMessageBytes)
        {
            return Fail(PointDecodeError.MessageTooLarge, 0);
        }

        var reader = new MessagePackReader(message);
        long readerStart = 0;
        try
        {
            PointDecodeError error = ParseMessage(ref reader, message, ref readerStart, out points, out seriesCount);
            return error == PointDecodeError.None ? new PointDecodeResult(PointDecodeError.None, points, 0, -1) : Fail(error, readerStart + reader.Consumed);
        }
        catch (EndOfStreamException)
        {
            return Fail(PointDecodeError.Truncated, readerStart + reader.Consumed);
        }
        catch (MessagePackSerializationException)
        {
            return Fail(PointDecodeError.UnexpectedType, readerStart + reader.Consumed);
        }
        catch (OverflowException)
        {
            return Fail(PointDecodeError.IndexOutOfRange, readerStart + reader.Consumed);
        }
        catch (InsufficientExecutionStackException)
        {
            return Fail(PointDecodeError.NestingTooDeep, readerStart + reader.Consumed);
        }
    }

    private static PointDecodeResult Fail(PointDecodeError error, long offset) => new(error, 0, 0, offset);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private PointDecodeError ParseMessage(ref MessagePackReader reader, ReadOnlyMemory<byte> message, ref long readerStart, out int points, out int seriesCount)
    {
        ReadOnlySpan<byte> bytes = message.Span;
        points = 0;
        seriesCount = 0;
        PointDecodeError error = ReadArrayHeader(ref reader, bytes.Length, int.MaxValue, PointDecodeError.None, out int topLevel);
        if (error != PointDecodeError.None)
        {
            return error;
        }

        if (topLevel == 0 || reader.NextMessagePackType != MessagePackType.Integer)
        {
            return PointDecodeError.UnsupportedVersion;
        }

        if (reader.ReadInt64() != PointMessageFormat.Version)
        {
            return PointDecodeError.UnsupportedVersion;
        }

        if (topLevel < PointMessageFormat.TopLevelElements)
        {
            return PointDecodeError.InvalidLength;
        }

        if (reader.NextMessagePackType != MessagePackType.Integer)
        {
            return PointDecodeError.UnexpectedType;
        }

        long baseTimestamp;
        try
        {
            baseTimestamp = reader.ReadInt64();
        }
        catch (OverflowException)
        {
            return PointDecodeError.TimestampOverflow;
        }

        // PERF: the tables and the points, the bulk of a message, are read straight from the span; the
        // MessagePackReader takes over again after them, for appended elements and the end check.
        int position = (int)reader.Consumed;
        _tableStart = position;
        error = ParseStrings(bytes, ref position, out int stringCount);
        _stringCount = stringCount;
        if (error == PointDecodeError.None)
        {
            error = ParseSeries(bytes, ref position, stringCount, out seriesCount);
            _tableEnd = position;
        }

        if (error == PointDecodeError.None)
        {
            error = ParsePoints(bytes, ref position, out points);
            if (error == PointDecodeError.None)
            {
                error = ReadPoints(bytes, ref position, points, seriesCount, baseTimestamp);
            }
        }

        readerStart = position;
        reader = new MessagePackReader(message[position..]);

        // Later minor additions to version 1 may append elements: they are skipped, within the depth limit.
        for (int i = PointMessageFormat.TopLevelElements; i < topLevel && error == PointDecodeError.None; i++)
        {
            reader.Depth = 1;
            error = Skip(ref reader, bytes.Length - (int)readerStart);
        }

        if (error == PointDecodeError.None && !reader.End)
        {
            error = PointDecodeError.TrailingBytes;
        }

        return error;
    }

    private PointDecodeError Skip(ref MessagePackReader reader, int length)
    {
        MessagePackType type = reader.NextMessagePackType;
        if (type is not (MessagePackType.Array or MessagePackType.Map))
        {
            // A scalar, string or binary: its length is checked by the reader (EndOfStreamException when short).
            reader.Skip();
            return PointDecodeError.None;
        }

        if (reader.Depth >= _limits.MaxDepth)
        {
            return PointDecodeError.NestingTooDeep;
        }

        _security.DepthStep(ref reader);
        int elements;
        if (type == MessagePackType.Array)
        {
            if (!reader.TryReadArrayHeader(out elements))
            {
                return PointDecodeError.Truncated;
            }
        }
        else
        {
            if (!reader.TryReadMapHeader(out int pairs))
            {
                return PointDecodeError.Truncated;
            }

            elements = pairs > int.MaxValue / 2 ? int.MaxValue : pairs * 2;
        }

        if (elements > length - reader.Consumed)
        {
            return PointDecodeError.Truncated;
        }

        for (int i = 0; i < elements; i++)
        {
            PointDecodeError error = Skip(ref reader, length);
            if (error != PointDecodeError.None)
            {
                return error;
            }
        }

        reader.Depth--;
        return PointDecodeError.None;
    }

    /// <summary>Reads an array header and checks the claimed length against a limit and the bytes left (each element takes one byte or more).</summary>
    private static PointDecodeError ReadArrayHeader(ref MessagePackReader reader, int length, int limit, PointDecodeError overLimit, out int count)
    {
        count = 0;
        if (reader.End)
        {
            return PointDecodeError.Truncated;
        }

        if (reader.NextMessagePackType != MessagePackType.Array)
        {
            return PointDecodeError.UnexpectedType;
        }

        if (!reader.TryReadArrayHeader(out count))
        {
            return PointDecodeError.Truncated;
        }

        // A 32-bit header can claim up to 4 G elements, which TryReadArrayHeader reports as negative.
        if (count < 0 || count > limit)
        {
            return overLimit == PointDecodeError.None ? PointDecodeError.Truncated : overLimit;
        }

        return count > length - reader.Consumed ? PointDecodeError.Truncated : PointDecodeError.None;
    }

    /// <summary>
    /// Reads an array header at <paramref name="position"/> and checks the claimed length against a limit and the bytes
    /// left (each element takes one byte or more); on success <paramref name="position"/> is past the header.
    /// </summary>
    private static PointDecodeError ReadArrayHeader(ReadOnlySpan<byte> bytes, ref int position, int limit, PointDecodeError overLimit, out int count)
    {
        count = 0;
        if ((uint)position >= (uint)bytes.Length)
        {
            return PointDecodeError.Truncated;
        }

        byte code = bytes[position];
        int header;
        long claimed;
        if (code is >= MessagePackCode.MinFixArray and <= MessagePackCode.MaxFixArray)
        {
            header = 1;
            claimed = code & 0x0F;
        }
        else if (code == MessagePackCode.Array16)
        {
            header = 3;
            if (bytes.Length - position < header)
            {
                return PointDecodeError.Truncated;
            }

            claimed = BinaryPrimitives.ReadUInt16BigEndian(bytes.Slice(position + 1, 2));
        }
        else if (code == MessagePackCode.Array32)
        {
            header = 5;
            if (bytes.Length - position < header)
            {
                return PointDecodeError.Truncated;
            }

            claimed = BinaryPrimitives.ReadUInt32BigEndian(bytes.Slice(position + 1, 4));
        }
        else
        {
            return PointDecodeError.UnexpectedType;
        }

        if (claimed > limit)
        {
            return overLimit == PointDecodeError.None ? PointDecodeError.Truncated : overLimit;
        }

        if (claimed > bytes.Length - position - header)
        {
            return PointDecodeError.Truncated;
        }

        position += header;
        count = (int)claimed;
        return PointDecodeError.None;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private PointDecodeError ParseStrings(ReadOnlySpan<byte> bytes, ref int position, out int count)
    {
        PointDecodeError error = ReadArrayHeader(bytes, ref position, _limits.MaxStrings, PointDecodeError.TooManyStrings, out count);
        if (error != PointDecodeError.None)
        {
            return error;
        }

        EnsureCapacity(ref _stringStart, count);
        EnsureCapacity(ref _stringLength, count);
        for (int i = 0; i < count; i++)
        {
            error = ReadStringBounds(bytes, ref position, out _stringStart[i], out _stringLength[i]);
            if (error != PointDecodeError.None)
            {
                return error;
            }
        }

        return PointDecodeError.None;
    }

    /// <summary>Reads a string's header from the bytes themselves, so its claimed length is checked before anything uses it.</summary>
    private PointDecodeError ReadStringBounds(ReadOnlySpan<byte> bytes, ref int position, out int start, out int length)
    {
        start = 0;
        length = 0;
        if ((uint)position >= (uint)bytes.Length)
        {
            return PointDecodeError.Truncated;
        }

        byte code = bytes[position];
        int header;
        long claimed;
        if (code is >= MessagePackCode.MinFixStr and <= MessagePackCode.MaxFixStr)
        {
            header = 1;
            claimed = code & 0x1F;
        }
        else if (code == MessagePackCode.Str8)
        {
            header = 2;
            if (bytes.Length - position < header)
            {
                return PointDecodeError.Truncated;
            }

            claimed = bytes[position + 1];
        }
        else if (code == MessagePackCode.Str16)
        {
            header = 3;
            if (bytes.Length - position < header)
            {
                return PointDecodeError.Truncated;
            }

            claimed = BinaryPrimitives.ReadUInt16BigEndian(bytes[(position + 1)..]);
        }
        else if (code == MessagePackCode.Str32)
        {
            header = 5;
            if (bytes.Length - position < header)
            {
                return PointDecodeError.Truncated;
            }

            claimed = BinaryPrimitives.ReadUInt32BigEndian(bytes[(position + 1)..]);
        }
        else
        {
            return PointDecodeError.UnexpectedType;
        }

        if (claimed > _limits.MaxStringBytes)
        {
            return PointDecodeError.StringTooLong;
        }

        if (claimed > bytes.Length - position - header)
        {
            return PointDecodeError.Truncated;
        }

        start = position + header;
        length = (int)claimed;
        if (!Utf8.IsValid(bytes.Slice(start, length)))
        {
            return PointDecodeError.InvalidUtf8;
        }

        position = start + length;
        return PointDecodeError.None;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private PointDecodeError ParseSeries(ReadOnlySpan<byte> bytes, ref int position, int stringCount, out int count)
    {
        PointDecodeError error = ReadArrayHeader(bytes, ref position, _limits.MaxSeries, PointDecodeError.TooManySeries, out count);
        if (error != PointDecodeError.None)
        {
            return error;
        }

        EnsureCapacity(ref _seriesFirst, count + 1);
        EnsureCapacity(ref _seriesIds, count);
        EnsureCapacity(ref _seriesRejected, count);
        int next = 0;
        int maxEntry = 1 + (2 * _limits.MaxLabelsPerSeries);
        for (int i = 0; i < count; i++)
        {
            error = ReadArrayHeader(bytes, ref position, int.MaxValue, PointDecodeError.None, out int entry);
            if (error != PointDecodeError.None)
            {
                return error;
            }

            if (entry > maxEntry)
            {
                return PointDecodeError.TooManyLabels;
            }

            if ((entry & 1) == 0)
            {
                return PointDecodeError.InvalidLength;
            }

            _seriesFirst[i] = next;
            EnsureCapacity(ref _seriesStrings, next + entry);
            for (int j = 0; j < entry; j++)
            {
                int start = position;
                error = ReadInteger(bytes, ref position, out long index);
                if (error != PointDecodeError.None || (ulong)index >= (ulong)stringCount)
                {
                    position = start;
                    return error != PointDecodeError.None ? error : PointDecodeError.IndexOutOfRange;
                }

                _seriesStrings[next++] = (int)index;
            }
        }

        _seriesFirst[count] = next;
        return PointDecodeError.None;
    }

    /// <summary>Reads the points array's header; the points themselves are read by <see cref="ReadPoints"/>.</summary>
    private PointDecodeError ParsePoints(ReadOnlySpan<byte> bytes, ref int position, out int count)
    {
        count = 0;
        int limit = _limits.MaxPointsPerMessage > int.MaxValue / 3 ? int.MaxValue : _limits.MaxPointsPerMessage * 3;
        PointDecodeError error = ReadArrayHeader(bytes, ref position, limit, PointDecodeError.TooManyPoints, out int elements);
        if (error != PointDecodeError.None)
        {
            return error;
        }

        if (elements % PointMessageFormat.ElementsPerPoint != 0)
        {
            return PointDecodeError.InvalidLength;
        }

        count = elements / PointMessageFormat.ElementsPerPoint;
        EnsureCapacity(ref _points, count);
        return PointDecodeError.None;
    }

    /// <summary>
    /// Reads <paramref name="count"/> points (series index, timestamp delta, value) from <paramref name="bytes"/> at
    /// <paramref name="position"/>, which ends after the last one read; on an error it stays at the bad element.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private PointDecodeError ReadPoints(ReadOnlySpan<byte> bytes, ref int position, int count, int seriesCount, long baseTimestamp)
    {
        DecodedPoint[] points = _points;
        for (int i = 0; i < count; i++)
        {
            // The common encodings in bulk; each point the fast loop stops at is read (or refused) here, and the
            // fast loop goes on after it (a producer that writes integral values as integers mixes encodings).
            i = ReadPointsFast(bytes, ref position, i, count, seriesCount, baseTimestamp);
            if (i == count)
            {
                break;
            }

            int start = position;
            PointDecodeError error = ReadInteger(bytes, ref position, out long series);
            if (error != PointDecodeError.None || (ulong)series >= (ulong)seriesCount)
            {
                position = start;
                return error != PointDecodeError.None ? error : PointDecodeError.IndexOutOfRange;
            }

            start = position;
            error = ReadInteger(bytes, ref position, out long delta);
            long timestamp = baseTimestamp + delta;
            // Overflow iff both operands share a sign that the result does not.
            if (error == PointDecodeError.None && ((baseTimestamp ^ timestamp) & (delta ^ timestamp)) < 0)
            {
                error = PointDecodeError.TimestampOverflow;
            }

            if (error != PointDecodeError.None)
            {
                position = start;
                return error;
            }

            start = position;
            error = ReadValue(bytes, ref position, out double value);
            if (error != PointDecodeError.None)
            {
                position = start;
                return error;
            }

            ref DecodedPoint point = ref points[i];
            point.Series = (int)series;
            point.TimestampUnixMs = timestamp;
            point.Value = value;
        }

        return PointDecodeError.None;
    }

    /// <summary>The most bytes a point takes on the fast path: a uint16 series index, a uint16 delta, a float64.</summary>
    private const int MaxFastPointBytes = 3 + 3 + 9;

    /// <summary>
    /// Reads the points written the common way — a series index up to 65,535 as fixint, uint8 or uint16, a timestamp
    /// delta from -128 to 65,535 ms as fixint, int8, uint8 or uint16, a float64 value — while at least
    /// <see cref="MaxFastPointBytes"/> bytes are left, so no element needs a bounds check of its own. Stops at the first
    /// point written any other way, or with an index out of range, and returns the index of that point (or
    /// <paramref name="count"/>): the general loop of <see cref="ReadPoints"/> reads (or refuses) it, at <paramref name="position"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int ReadPointsFast(ReadOnlySpan<byte> bytes, ref int position, int from, int count, int seriesCount, long baseTimestamp)
    {
        // PERF: the bulk of a message. One length test per point instead of one per element, the common encodings
        // tested inline, the array written without bounds checks (ParsePoints sized it to count).
        if (baseTimestamp > long.MaxValue - ushort.MaxValue || baseTimestamp < long.MinValue - sbyte.MinValue)
        {
            return from; // a delta could overflow: the general loop checks each one
        }

        ref byte data = ref MemoryMarshal.GetReference(bytes);
        ref DecodedPoint points = ref MemoryMarshal.GetArrayDataReference(_points);
        int last = bytes.Length - MaxFastPointBytes;
        int pos = position;
        int i = from;
        while (i < count && pos <= last)
        {
            // Every read below is within [pos, pos + MaxFastPointBytes), inside the message.
            int series;
            byte code = Unsafe.Add(ref data, pos);
            int next;
            if (code <= MessagePackCode.MaxFixInt)
            {
                series = code;
                next = pos + 1;
            }
            else if (code == MessagePackCode.UInt8)
            {
                series = Unsafe.Add(ref data, pos + 1);
                next = pos + 2;
            }
            else if (code == MessagePackCode.UInt16)
            {
                series = BinaryPrimitives.ReverseEndianness(Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref data, pos + 1)));
                next = pos + 3;
            }
            else
            {
                break;
            }

            if ((uint)series >= (uint)seriesCount)
            {
                break;
            }

            long delta;
            code = Unsafe.Add(ref data, next);
            if (code <= MessagePackCode.MaxFixInt)
            {
                delta = code;
                next++;
            }
            else if (code >= MessagePackCode.MinNegativeFixInt)
            {
                delta = (sbyte)code;
                next++;
            }
            else if (code == MessagePackCode.UInt16)
            {
                delta = BinaryPrimitives.ReverseEndianness(Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref data, next + 1)));
                next += 3;
            }
            else if (code == MessagePackCode.UInt8)
            {
                delta = Unsafe.Add(ref data, next + 1);
                next += 2;
            }
            else if (code == MessagePackCode.Int8)
            {
                delta = (sbyte)Unsafe.Add(ref data, next + 1);
                next += 2;
            }
            else
            {
                break;
            }

            if (Unsafe.Add(ref data, next) != MessagePackCode.Float64)
            {
                break;
            }

            ulong bits = BinaryPrimitives.ReverseEndianness(Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref data, next + 1)));
            ref DecodedPoint point = ref Unsafe.Add(ref points, i);
            point.Series = series;
            point.TimestampUnixMs = baseTimestamp + delta;
            point.Value = BitConverter.UInt64BitsToDouble(bits);
            pos = next + 9;
            i++;
        }

        position = pos;
        return i;
    }

    /// <summary>Reads a MessagePack integer of any width that fits in 64 signed bits (a larger uint64 is <see cref="PointDecodeError.IndexOutOfRange"/>, as before).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static PointDecodeError ReadInteger(ReadOnlySpan<byte> bytes, ref int position, out long value)
    {
        if ((uint)position < (uint)bytes.Length)
        {
            byte code = bytes[position];
            if (code <= MessagePackCode.MaxFixInt)
            {
                value = code;
                position++;
                return PointDecodeError.None;
            }

            if (code >= MessagePackCode.MinNegativeFixInt)
            {
                value = (sbyte)code;
                position++;
                return PointDecodeError.None;
            }

            // A timestamp delta of 128 ms to 65 s: the common case after fixints.
            if (code == MessagePackCode.UInt16 && bytes.Length - position >= 3)
            {
                value = BinaryPrimitives.ReadUInt16BigEndian(bytes.Slice(position + 1, 2));
                position += 3;
                return PointDecodeError.None;
            }
        }

        return ReadIntegerSlow(bytes, ref position, out value);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static PointDecodeError ReadIntegerSlow(ReadOnlySpan<byte> bytes, ref int position, out long value)
    {
        value = 0;
        if ((uint)position >= (uint)bytes.Length)
        {
            return PointDecodeError.Truncated;
        }

        byte code = bytes[position];
        int size = code switch
        {
            MessagePackCode.UInt8 or MessagePackCode.Int8 => 1,
            MessagePackCode.UInt16 or MessagePackCode.Int16 => 2,
            MessagePackCode.UInt32 or MessagePackCode.Int32 => 4,
            MessagePackCode.UInt64 or MessagePackCode.Int64 => 8,
            _ => 0,
        };
        if (size == 0)
        {
            return PointDecodeError.UnexpectedType;
        }

        if (bytes.Length - position - 1 < size)
        {
            return PointDecodeError.Truncated;
        }

        ReadOnlySpan<byte> payload = bytes.Slice(position + 1, size);
        switch (code)
        {
            case MessagePackCode.UInt8: value = payload[0]; break;
            case MessagePackCode.UInt16: value = BinaryPrimitives.ReadUInt16BigEndian(payload); break;
            case MessagePackCode.UInt32: value = BinaryPrimitives.ReadUInt32BigEndian(payload); break;
            case MessagePackCode.UInt64:
                ulong unsigned = BinaryPrimitives.ReadUInt64BigEndian(payload);
                if (unsigned > long.MaxValue)
                {
                    return PointDecodeError.IndexOutOfRange;
                }

                value = (long)unsigned;
                break;
            case MessagePackCode.Int8: value = (sbyte)payload[0]; break;
            case MessagePackCode.Int16: value = BinaryPrimitives.ReadInt16BigEndian(payload); break;
            case MessagePackCode.Int32: value = BinaryPrimitives.ReadInt32BigEndian(payload); break;
            default: value = BinaryPrimitives.ReadInt64BigEndian(payload); break;
        }

        position += 1 + size;
        return PointDecodeError.None;
    }

    /// <summary>Reads a value: float64, float32 or any integer (JavaScript and Python write integral numbers as integers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static PointDecodeError ReadValue(ReadOnlySpan<byte> bytes, ref int position, out double value)
    {
        if ((uint)position < (uint)bytes.Length && bytes[position] == MessagePackCode.Float64 && bytes.Length - position >= 9)
        {
            value = BinaryPrimitives.ReadDoubleBigEndian(bytes.Slice(position + 1, 8));
            position += 9;
            return PointDecodeError.None;
        }

        return ReadValueSlow(bytes, ref position, out value);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static PointDecodeError ReadValueSlow(ReadOnlySpan<byte> bytes, ref int position, out double value)
    {
        value = 0;
        if ((uint)position >= (uint)bytes.Length)
        {
            return PointDecodeError.Truncated;
        }

        byte code = bytes[position];
        if (code is MessagePackCode.Float64 or MessagePackCode.Float32)
        {
            int size = code == MessagePackCode.Float64 ? 8 : 4;
            if (bytes.Length - position - 1 < size)
            {
                return PointDecodeError.Truncated;
            }

            value = size == 8 ? BinaryPrimitives.ReadDoubleBigEndian(bytes.Slice(position + 1, 8)) : BinaryPrimitives.ReadSingleBigEndian(bytes.Slice(position + 1, 4));
            position += 1 + size;
            return PointDecodeError.None;
        }

        if (code == MessagePackCode.UInt64)
        {
            if (bytes.Length - position < 9)
            {
                return PointDecodeError.Truncated;
            }

            value = BinaryPrimitives.ReadUInt64BigEndian(bytes.Slice(position + 1, 8));
            position += 9;
            return PointDecodeError.None;
        }

        PointDecodeError error = ReadInteger(bytes, ref position, out long integer);
        value = integer;
        return error;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private PointDecodeError ResolveSeries(ReadOnlySpan<byte> bytes, int count)
    {
        // The registry reclaims idle series; an id cached from before would be refused by its shard as stale
        // once the engine retires it. Any reclamation since the last message empties the cache (one read per message).
        long reclaimed = _registry.Reclaimed;
        if (reclaimed != _reclaimedSeen)
        {
            ClearCaches();
            _reclaimedSeen = reclaimed;
        }

        // PERF: a producer tends to send the same strings and series tables message after message (per partition,
        // so a consumer of several partitions sees a few tables in turn). When this message's tables are byte for
        // byte one of the last 16 resolved (and no id was reclaimed since), their ids are this message's: a length
        // test per remembered table and one comparison of about a kilobyte instead of a lookup per string and series.
        ReadOnlySpan<byte> table = bytes[_tableStart.._tableEnd];
        foreach (RecentTable recent in _recentTables)
        {
            if (recent.Length == table.Length && recent.Count == count && table.SequenceEqual(recent.Bytes.AsSpan(0, recent.Length)))
            {
                recent.Ids.AsSpan(0, count).CopyTo(_seriesIds);
                Array.Clear(_seriesRejected, 0, count);
                _anyRejected = false;
                return PointDecodeError.None;
            }
        }

        // PERF: two levels. Each string of the table is found by its bytes once per message (a number per distinct
        // string seen), then each series entry by the numbers of its strings: the metric name and the label names
        // and values that many series share are hashed once a message, not once per series, and an entry's key is
        // 4 bytes a string whatever the strings' lengths. Nothing is allocated for known strings and series.
        if (_strings.Count > _limits.MaxCachedStrings - _stringCount || _cache.Count > _limits.MaxCachedSeries - count)
        {
            ClearCaches();
        }

        int stringCount = _stringCount;
        EnsureCapacity(ref _stringIds, stringCount);
        int[] stringIds = _stringIds;
        for (int i = 0; i < stringCount; i++)
        {
            ReadOnlySpan<byte> text = bytes.Slice(_stringStart[i], _stringLength[i]);
            if (!_strings.TryGetValue(text, out int number))
            {
                number = _strings.Count;
                _strings.Add(text, number);
            }

            stringIds[i] = number;
        }

        bool anyRejected = false;
        for (int i = 0; i < count; i++)
        {
            int first = _seriesFirst[i];
            int strings = _seriesFirst[i + 1] - first;
            ReadOnlySpan<byte> key = BuildKey(first, strings);
            if (_cache.TryGetValue(key, out SeriesId id))
            {
                _seriesIds[i] = id;
                _seriesRejected[i] = null;
                continue;
            }

            ResolveSlow(bytes, i, key);
            anyRejected |= _seriesRejected[i] is not null;
        }

        _anyRejected = anyRejected;

        // Refused series are not remembered: a refusal (a cardinality limit) may not hold for the next message.
        if (!anyRejected && table.Length <= MaxRecentTableBytes)
        {
            _recentTables[_nextRecentTable].Remember(table, _seriesIds.AsSpan(0, count));
            _nextRecentTable = (_nextRecentTable + 1) % RecentTables;
        }

        return PointDecodeError.None;
    }

    /// <summary>Forgets every string number and series id (string numbers are only meaningful with the series keys made of them).</summary>
    private void ClearCaches()
    {
        _cache.Clear();
        _strings.Clear();
        foreach (RecentTable recent in _recentTables)
        {
            recent.Forget();
        }
    }

    private void ResolveSlow(ReadOnlySpan<byte> bytes, int entry, ReadOnlySpan<byte> key)
    {
        (string metric, Label[] labels) = ReadSeries(bytes, 0, entry);
        RejectReason reason = _registry.TryGetOrAdd(metric, labels, out SeriesId id);
        if (reason != RejectReason.None)
        {
            // The writer re-resolves these per point so that each refusal is counted under its source.
            _seriesRejected[entry] = new RejectedSeries(metric, labels);
            return;
        }

        _cache.Add(key, id);
        _seriesIds[entry] = id;
        _seriesRejected[entry] = null;
    }

    /// <summary>The metric and labels of series entry <paramref name="entry"/>, from bytes that start at message offset <paramref name="origin"/>.</summary>
    private (string Metric, Label[] Labels) ReadSeries(ReadOnlySpan<byte> bytes, int origin, int entry)
    {
        int first = _seriesFirst[entry];
        int strings = _seriesFirst[entry + 1] - first;
        string metric = GetString(bytes, origin, _seriesStrings[first]);
        var labels = new Label[strings / 2];
        for (int l = 0; l < labels.Length; l++)
        {
            labels[l] = new Label(GetString(bytes, origin, _seriesStrings[first + 1 + (2 * l)]), GetString(bytes, origin, _seriesStrings[first + 2 + (2 * l)]));
        }

        return (metric, labels);
    }

    private string GetString(ReadOnlySpan<byte> bytes, int origin, int index) => Encoding.UTF8.GetString(bytes.Slice(_stringStart[index] - origin, _stringLength[index]));

    /// <summary>The cache key of a series entry: the numbers of its strings (<see cref="_stringIds"/>), 4 bytes each.</summary>
    private ReadOnlySpan<byte> BuildKey(int first, int strings)
    {
        EnsureCapacity(ref _keyIds, strings);
        Span<int> key = _keyIds.AsSpan(0, strings);
        int[] stringIds = _stringIds;
        int[] seriesStrings = _seriesStrings;
        for (int j = 0; j < key.Length; j++)
        {
            key[j] = stringIds[seriesStrings[first + j]];
        }

        return MemoryMarshal.AsBytes((ReadOnlySpan<int>)key);
    }

    private static void EnsureCapacity<T>(ref T[] array, int count)
    {
        if (count > array.Length)
        {
            // Callers pass counts already checked against the limits and the bytes left.
            Array.Resize(ref array, Math.Max(count, Math.Min(array.Length * 2, Array.MaxLength)));
        }
    }

    private sealed record RejectedSeries(string Metric, Label[] Labels);

    /// <summary>A resolved message's string and series tables, as bytes, with the series ids they resolved to.</summary>
    private sealed class RecentTable
    {
        public byte[] Bytes { get; private set; } = [];

        public int Length { get; private set; } = -1;

        public SeriesId[] Ids { get; private set; } = [];

        public int Count { get; private set; }

        public void Remember(ReadOnlySpan<byte> table, ReadOnlySpan<SeriesId> ids)
        {
            if (table.Length > Bytes.Length)
            {
                Bytes = new byte[Math.Max(table.Length, 1024)];
            }

            if (ids.Length > Ids.Length)
            {
                Ids = new SeriesId[Math.Max(ids.Length, 16)];
            }

            table.CopyTo(Bytes);
            ids.CopyTo(Ids);
            Length = table.Length;
            Count = ids.Length;
        }

        public void Forget() => Length = -1;
    }
}
