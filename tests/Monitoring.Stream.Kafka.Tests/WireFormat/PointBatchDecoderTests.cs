using System.Buffers;
using MessagePack;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.WireFormat;

public class PointBatchDecoderTests
{
    private static byte[] Encode(int series, int points, Func<int, double>? value = null)
    {
        var encoder = new PointBatchEncoder();
        for (int i = 0; i < points; i++)
        {
            int s = i % series;
            encoder.Add("req_seconds", [new("route", "/r" + s), new("zone", "z" + (s % 3))], value?.Invoke(i) ?? (i * 0.5) - 7, T0 + (i % 5000));
        }

        return encoder.ToArray();
    }

    private static (PointDecodeResult Result, PipelineMetrics Metrics) DecodeOne(byte[] message, PointDecoderLimits? limits = null)
    {
        var sink = new RowSink();
        MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        var decoder = new PointBatchDecoder(pipeline.Registry, limits);
        PointDecodeResult result;
        using (PointWriter writer = pipeline.CreateWriter("kafka:test/0"))
        {
            result = decoder.Decode(message, writer);
        }

        pipeline.StopAsync().GetAwaiter().GetResult();
        PipelineMetrics metrics = pipeline.GetMetrics();
        pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return (result, metrics);
    }

    [Fact]
    public async Task Decode_EncodedMessage_AggregatesExactStatistics()
    {
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        var decoder = new PointBatchDecoder(pipeline.Registry);
        byte[] message = Encode(series: 7, points: 7000);
        using (PointWriter writer = pipeline.CreateWriter("kafka:test/0"))
        {
            PointDecodeResult result = decoder.Decode(message, writer);
            Assert.Equal(new PointDecodeResult(PointDecodeError.None, 7000, 0, -1), result);
        }

        await pipeline.StopAsync();
        AggregateRow row = Assert.Single(sink.Rows, r => r.SeriesKey == "req_seconds{route=\"/r3\",zone=\"z0\"}");
        double[] values = [.. Enumerable.Range(0, 7000).Where(i => i % 7 == 3).Select(i => (i * 0.5) - 7)];
        Assert.Equal(values.Length, row.Count);
        Assert.Equal(values.Sum(), row.Sum);
        Assert.Equal(values.Min(), row.Min);
        Assert.Equal(values.Max(), row.Max);
        Assert.Equal(7000, sink.Rows.Sum(r => r.Count));
        Assert.Equal(7, decoder.CachedSeries);
    }

    [Fact]
    public async Task Decode_MessageFromStockSerializer_IsRead()
    {
        // What any MessagePack library writes from plain arrays, ints and floats (docs/wire-format.md).
        object[] message =
        [
            1, T0, new[] { "cpu_seconds", "host", "a", "b" }, new[] { new[] { 0, 1, 2 }, new[] { 0, 1, 3 } },
            new object[] { 0, 0, 1.5, 1, 10, 2, 0, 20, -0.25f, 1, 30, 4UL },
        ];
        byte[] bytes = MessagePackSerializer.Serialize(message);
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("stock"))
        {
            Assert.Equal(PointDecodeError.None, new PointBatchDecoder(pipeline.Registry).Decode(bytes, writer).Error);
        }

        await pipeline.StopAsync();
        AggregateRow a = Assert.Single(sink.Rows, r => r.SeriesKey == "cpu_seconds{host=\"a\"}");
        AggregateRow b = Assert.Single(sink.Rows, r => r.SeriesKey == "cpu_seconds{host=\"b\"}");
        Assert.Equal((2, 1.25, -0.25, 1.5), (a.Count, a.Sum, a.Min, a.Max));
        Assert.Equal((2, 6.0, 2.0, 4.0), (b.Count, b.Sum, b.Min, b.Max));
    }

    [Fact]
    public async Task Decode_KnownSeries_AllocatesNothingPerPoint()
    {
        const int PointsPerMessage = 10_000;
        const int Messages = 20;
        var sink = new RowSink();

        // Tiny shard queues: the writer can run at most a few batches ahead of the shard, so the warm-up
        // grows the pipeline's batch pool to what the run needs. (With the default 256-batch queues, a
        // measured run that got further ahead than the warm-up allocated new 24 KB batches for the pool:
        // that was the "about 4 bytes a point" once seen here, growth of a bounded pool, not per point.)
        await using MetricsPipeline pipeline = Create(sink, queueBatches: 4);
        pipeline.Start();
        var decoder = new PointBatchDecoder(pipeline.Registry);
        byte[] message = Encode(series: 100, points: PointsPerMessage);
        using PointWriter writer = pipeline.CreateWriter("alloc");
        void Loop()
        {
            for (int m = 0; m < Messages; m++)
            {
                if (decoder.Decode(message, writer).Error != PointDecodeError.None)
                {
                    throw new InvalidOperationException("decode failed");
                }
            }

            writer.Flush();
        }

        Loop();
        Loop();
        await pipeline.DrainAsync();
        long batches = pipeline.GetMetrics().BatchesAllocated;
        long before = GC.GetAllocatedBytesForCurrentThread();
        Loop();
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        long grown = pipeline.GetMetrics().BatchesAllocated - batches;

        // Anything allocated per point would cost at least 24 bytes a point (4.8 MB here); one more pooled
        // batch costs about 24 KB. Allowed: two batches of pool growth, nothing per point.
        Assert.True(bytes < 2 * 25_000, $"decoding {Messages * PointsPerMessage} points of known series allocated {bytes} bytes ({grown} new pooled batches)");
    }

    [Fact]
    public void Decode_Empty_IsEmpty() => Assert.Equal(PointDecodeError.Empty, DecodeOne([]).Result.Error);

    [Fact]
    public void Decode_EveryTruncation_IsTruncatedAndWritesNothing()
    {
        byte[] message = Encode(series: 3, points: 40);
        var sink = new RowSink();
        MetricsPipeline pipeline = Create(sink);
        var decoder = new PointBatchDecoder(pipeline.Registry);
        for (int length = 1; length < message.Length; length++)
        {
            PointDecodeResult result = decoder.Validate(message.AsMemory(0, length));
            Assert.True(result.Error == PointDecodeError.Truncated, $"cut at {length} of {message.Length}: {result.Describe()}");
        }

        Assert.Equal(0, pipeline.Registry.Count);
    }

    [Fact]
    public void Decode_TruncatedMessage_WritesNoPoint()
    {
        byte[] message = Encode(series: 3, points: 40);
        (PointDecodeResult result, PipelineMetrics metrics) = DecodeOne(message[..(message.Length - 3)]);
        Assert.Equal(PointDecodeError.Truncated, result.Error);
        Assert.Equal(0, metrics.Offered);
    }

    [Fact]
    public void Decode_WrongVersion_IsUnsupportedVersion()
    {
        byte[] message = Encode(series: 1, points: 3);
        Assert.Equal(0x01, message[1]);
        message[1] = 0x02;
        Assert.Equal(PointDecodeError.UnsupportedVersion, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_TopLevelMap_IsUnexpectedType()
    {
        byte[] message = MessagePackSerializer.Serialize(new Dictionary<string, int> { ["v"] = 1 });
        Assert.Equal(PointDecodeError.UnexpectedType, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_RandomBytes_AreRefusedWithoutThrowing()
    {
        var random = new Random(8);
        var sink = new RowSink();
        MetricsPipeline pipeline = Create(sink);
        var decoder = new PointBatchDecoder(pipeline.Registry);
        var reasons = new Dictionary<PointDecodeError, int>();
        for (int i = 0; i < 20_000; i++)
        {
            byte[] bytes = new byte[random.Next(1, 200)];
            random.NextBytes(bytes);
            PointDecodeError error = decoder.Validate(bytes).Error;
            reasons[error] = reasons.GetValueOrDefault(error) + 1;
        }

        Assert.False(reasons.ContainsKey(PointDecodeError.None));
        // Random bytes almost never open with an array whose first element is 1: the type and version checks refuse them.
        Assert.True(reasons.GetValueOrDefault(PointDecodeError.UnexpectedType) + reasons.GetValueOrDefault(PointDecodeError.UnsupportedVersion) > 19_000, string.Join(", ", reasons));
    }

    [Fact]
    public void Decode_RandomBodyAfterValidHeader_IsRefusedWithoutThrowing()
    {
        var random = new Random(9);
        var sink = new RowSink();
        MetricsPipeline pipeline = Create(sink);
        var decoder = new PointBatchDecoder(pipeline.Registry);
        for (int i = 0; i < 20_000; i++)
        {
            byte[] bytes = new byte[random.Next(3, 200)];
            random.NextBytes(bytes);
            bytes[0] = 0x95;
            bytes[1] = 0x01;
            bytes[2] = 0x00;
            PointDecodeError error = decoder.Validate(bytes).Error;
            Assert.NotEqual(PointDecodeError.None, error);
        }
    }

    [Fact]
    public void Decode_TenThousandDeepNestingInPlaceOfVersion_IsUnsupportedVersion()
    {
        byte[] message = [.. Enumerable.Repeat((byte)0x91, 10_000), 0x01];
        Assert.Equal(PointDecodeError.UnsupportedVersion, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_TenThousandDeepNestingInTrailingElement_IsNestingTooDeep()
    {
        // [1, 0, [], [], [], [[[[...]]]]]: a sixth element is allowed and skipped, within the depth limit.
        byte[] message = [0x96, 0x01, 0x00, 0x90, 0x90, 0x90, .. Enumerable.Repeat((byte)0x91, 10_000), 0xc0];
        PointDecodeResult result = DecodeOne(message).Result;
        Assert.Equal(PointDecodeError.NestingTooDeep, result.Error);
    }

    [Fact]
    public void Decode_ShallowTrailingElement_IsSkipped()
    {
        byte[] message = [0x96, 0x01, 0x00, 0x90, 0x90, 0x90, 0x92, 0x91, 0x01, 0xa1, (byte)'x'];
        Assert.Equal(PointDecodeError.None, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_StringClaimingTwoGigabytes_IsStringTooLong()
    {
        // [1, 0, ["<2 GiB claimed>"...
        byte[] message = [0x95, 0x01, 0x00, 0x91, 0xdb, 0x7f, 0xff, 0xff, 0xff, (byte)'a', (byte)'b'];
        Assert.Equal(PointDecodeError.StringTooLong, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_StringsArrayClaimingTwoGigaElements_IsTooManyStrings()
    {
        byte[] message = [0x95, 0x01, 0x00, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0xa1, (byte)'a'];
        Assert.Equal(PointDecodeError.TooManyStrings, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_PointsArrayClaimingFourGigaElements_IsTooManyPoints()
    {
        byte[] message = [0x95, 0x01, 0x00, 0x90, 0x90, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00];
        Assert.Equal(PointDecodeError.TooManyPoints, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_ArrayClaimingMoreThanTheBytesLeft_IsTruncated()
    {
        // 1,000 strings claimed within the limit, three bytes left.
        byte[] message = [0x95, 0x01, 0x00, 0xdc, 0x03, 0xe8, 0xa1, (byte)'a', 0xc0];
        Assert.Equal(PointDecodeError.Truncated, DecodeOne(message).Result.Error);
    }

    [Fact]
    public async Task Decode_NaNValues_RefusesThosePointsOnlyCountedAsNotANumber()
    {
        byte[] message = Encode(series: 4, points: 100, value: i => i % 10 == 0 ? double.NaN : i);
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("kafka:nan/0"))
        {
            PointDecodeResult result = new PointBatchDecoder(pipeline.Registry).Decode(message, writer);
            Assert.Equal(new PointDecodeResult(PointDecodeError.None, 100, 10, -1), result);
        }

        await pipeline.StopAsync();
        PipelineMetrics metrics = pipeline.GetMetrics();
        Assert.Equal(10, metrics.RejectedByReason[RejectReason.NotANumber]);
        SourceMetrics source = Assert.Single(metrics.Sources, s => s.Source == "kafka:nan/0");
        Assert.Equal((100L, 90L, 10L), (source.Offered, source.Accepted, source.Rejected));
        Assert.Equal(90, sink.Rows.Sum(r => r.Count));
    }

    [Fact]
    public void Decode_MillionPointsOverTheLimit_IsTooManyPoints()
    {
        byte[] message = Encode(series: 10, points: 1_000_000);
        (PointDecodeResult result, PipelineMetrics metrics) = DecodeOne(message, new PointDecoderLimits { MaxMessageBytes = 64 << 20 });
        Assert.Equal(PointDecodeError.TooManyPoints, result.Error);
        Assert.Equal(0, metrics.Offered);
    }

    [Fact]
    public void Decode_MessageOverTheSizeLimit_IsMessageTooLarge()
    {
        byte[] message = Encode(series: 10, points: 1_000);
        Assert.Equal(PointDecodeError.MessageTooLarge, DecodeOne(message, new PointDecoderLimits { MaxMessageBytes = message.Length - 1 }).Result.Error);
    }

    [Fact]
    public void Decode_SeriesIndexOutsideTable_IsIndexOutOfRange()
    {
        object[] message = [1, T0, new[] { "m" }, new[] { new[] { 0 } }, new object[] { 1, 0, 1.0 }];
        Assert.Equal(PointDecodeError.IndexOutOfRange, DecodeOne(MessagePackSerializer.Serialize(message)).Result.Error);
    }

    [Fact]
    public void Decode_StringIndexOutsideTable_IsIndexOutOfRange()
    {
        object[] message = [1, T0, new[] { "m" }, new[] { new[] { 0, 1, 2 } }, new object[] { 0, 0, 1.0 }];
        Assert.Equal(PointDecodeError.IndexOutOfRange, DecodeOne(MessagePackSerializer.Serialize(message)).Result.Error);
    }

    [Fact]
    public void Decode_PointsNotInTriples_IsInvalidLength()
    {
        object[] message = [1, T0, new[] { "m" }, new[] { new[] { 0 } }, new object[] { 0, 0 }];
        Assert.Equal(PointDecodeError.InvalidLength, DecodeOne(MessagePackSerializer.Serialize(message)).Result.Error);
    }

    [Fact]
    public void Decode_TooManyLabels_IsTooManyLabels()
    {
        object[] message = [1, T0, new[] { "m", "k", "v" }, new[] { new[] { 0, 1, 2, 1, 2 } }, new object[] { 0, 0, 1.0 }];
        PointDecodeResult result = DecodeOne(MessagePackSerializer.Serialize(message), new PointDecoderLimits { MaxLabelsPerSeries = 1 }).Result;
        Assert.Equal(PointDecodeError.TooManyLabels, result.Error);
    }

    [Fact]
    public void Decode_InvalidUtf8_IsInvalidUtf8()
    {
        byte[] message = [0x95, 0x01, 0x00, 0x91, 0xa2, 0xc3, 0x28, 0x90, 0x90];
        Assert.Equal(PointDecodeError.InvalidUtf8, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_TimestampOverflow_IsTimestampOverflow()
    {
        object[] message = [1, long.MaxValue - 1, new[] { "m" }, new[] { new[] { 0 } }, new object[] { 0, 5, 1.0 }];
        Assert.Equal(PointDecodeError.TimestampOverflow, DecodeOne(MessagePackSerializer.Serialize(message)).Result.Error);
    }

    [Fact]
    public void Decode_BytesAfterMessage_IsTrailingBytes()
    {
        byte[] message = [.. Encode(series: 1, points: 2), 0xc0];
        Assert.Equal(PointDecodeError.TrailingBytes, DecodeOne(message).Result.Error);
    }

    [Fact]
    public void Decode_ValueOfWrongType_IsUnexpectedType()
    {
        object[] message = [1, T0, new[] { "m" }, new[] { new[] { 0 } }, new object[] { 0, 0, "1.0" }];
        Assert.Equal(PointDecodeError.UnexpectedType, DecodeOne(MessagePackSerializer.Serialize(message)).Result.Error);
    }

    [Fact]
    public async Task Decode_SameSeriesTableAgainThenAnotherOfTheSameSize_EveryPointInItsOwnSeries()
    {
        // The decoder reuses the last message's series ids when its tables are byte for byte the same: messages 1 and
        // 2 share a table, message 3's table has the same length but other routes, message 4 repeats message 1's.
        static byte[] Message(string route, double value)
        {
            var encoder = new PointBatchEncoder();
            for (int i = 0; i < 40; i++)
            {
                encoder.Add("req_seconds", [new("route", route + (i % 4))], value, T0 + i);
            }

            return encoder.ToArray();
        }

        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        var decoder = new PointBatchDecoder(pipeline.Registry);
        using (PointWriter writer = pipeline.CreateWriter("kafka:test/0"))
        {
            Assert.Equal(Message("/a", 1).Length, Message("/b", 1).Length);
            foreach (byte[] message in new[] { Message("/a", 1), Message("/a", 2), Message("/b", 4), Message("/a", 8) })
            {
                Assert.Equal(new PointDecodeResult(PointDecodeError.None, 40, 0, -1), decoder.Decode(message, writer));
            }
        }

        await pipeline.StopAsync();
        for (int r = 0; r < 4; r++)
        {
            Assert.Equal((30L, 110.0), sink.Rows.Where(x => x.SeriesKey == $"req_seconds{{route=\"/a{r}\"}}").Aggregate((0L, 0.0), (t, x) => (t.Item1 + x.Count, t.Item2 + x.Sum)));
            Assert.Equal((10L, 40.0), sink.Rows.Where(x => x.SeriesKey == $"req_seconds{{route=\"/b{r}\"}}").Aggregate((0L, 0.0), (t, x) => (t.Item1 + x.Count, t.Item2 + x.Sum)));
        }
    }

    [Theory]
    [InlineData(2_000_000)]
    [InlineData(2)]
    public async Task Decode_TablesSharingStringsInOtherOrders_EveryPointInItsOwnSeries(int maxCachedStrings)
    {
        // Series are found by the numbers of their strings: the same strings at other indices must find the same
        // series, the same strings in another role (a label's name as a value) another series, and a cache of strings
        // too small for one message (cleared before each) must change nothing.
        object[] first = [1, T0, new[] { "m", "a", "b" }, new[] { new[] { 0, 1, 2 }, new[] { 0, 2, 1 } }, new object[] { 0, 0, 1.0, 1, 1, 2.0 }];
        object[] second = [1, T0, new[] { "b", "a", "m" }, new[] { new[] { 2, 1, 0 }, new[] { 2, 0, 1 } }, new object[] { 0, 2, 4.0, 1, 3, 8.0 }];
        object[] third = [1, T0, new[] { "m", "a", "b", "c" }, new[] { new[] { 0, 1, 3 }, new[] { 0, 1, 2 } }, new object[] { 0, 4, 16.0, 1, 5, 32.0 }];
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        var decoder = new PointBatchDecoder(pipeline.Registry, new PointDecoderLimits { MaxCachedStrings = maxCachedStrings });
        using (PointWriter writer = pipeline.CreateWriter("kafka:test/0"))
        {
            foreach (object[] message in new[] { first, second, third, second })
            {
                Assert.Equal(new PointDecodeResult(PointDecodeError.None, 2, 0, -1), decoder.Decode(MessagePackSerializer.Serialize(message), writer));
            }
        }

        await pipeline.StopAsync();
        (long, double) Totals(string key) => sink.Rows.Where(x => x.SeriesKey == key).Aggregate((0L, 0.0), (t, x) => (t.Item1 + x.Count, t.Item2 + x.Sum));
        Assert.Equal((4L, 1.0 + 4 + 32 + 4), Totals("m{a=\"b\"}"));
        Assert.Equal((3L, 2.0 + 8 + 8), Totals("m{b=\"a\"}"));
        Assert.Equal((1L, 16.0), Totals("m{a=\"c\"}"));
        Assert.Equal(3, sink.Rows.Select(x => x.SeriesKey).Distinct().Count());
    }

    [Fact]
    public async Task Decode_InvalidMetricName_RefusesItsPointsCountedBySource()
    {
        object[] message = [1, T0, new[] { "bad-name", "ok_name" }, new[] { new[] { 0 }, new[] { 1 } }, new object[] { 0, 0, 1.0, 1, 0, 2.0, 0, 1, 3.0 }];
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("kafka:names/0"))
        {
            PointDecodeResult result = new PointBatchDecoder(pipeline.Registry).Decode(MessagePackSerializer.Serialize(message), writer);
            Assert.Equal(new PointDecodeResult(PointDecodeError.None, 3, 2, -1), result);
        }

        await pipeline.StopAsync();
        SourceMetrics source = Assert.Single(pipeline.GetMetrics().Sources, s => s.Source == "kafka:names/0");
        Assert.Equal((3L, 1L, 2L), (source.Offered, source.Accepted, source.Rejected));
        Assert.Equal(2, pipeline.GetMetrics().RejectedByReason[RejectReason.InvalidMetricName]);
    }

    [Fact]
    public async Task Decode_IntoADisposedWriter_EveryPointRefusedAsWriterClosedAndCounted()
    {
        // The decoder writes a message holding the writer's gate once; a closed writer is not entered, and each point
        // of the message (a refused series' too) is refused and counted as a call to it would be.
        object[] message = [1, T0, new[] { "bad-name", "ok_name" }, new[] { new[] { 0 }, new[] { 1 } }, new object[] { 0, 0, 1.0, 1, 0, 2.0, 0, 1, 3.0 }];
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        PointWriter writer = pipeline.CreateWriter("kafka:closed/0");
        writer.Dispose();
        PointDecodeResult result = new PointBatchDecoder(pipeline.Registry).Decode(MessagePackSerializer.Serialize(message), writer);
        Assert.Equal(new PointDecodeResult(PointDecodeError.None, 3, 3, -1), result);
        await pipeline.StopAsync();
        PipelineMetrics m = pipeline.GetMetrics();
        SourceMetrics source = Assert.Single(m.Sources, s => s.Source == "kafka:closed/0");
        Assert.Equal((3L, 0L, 3L), (source.Offered, source.Accepted, source.Rejected));
        Assert.Equal(3, m.RejectedByReason[RejectReason.WriterClosed]);
        Assert.Empty(sink.Rows);
    }

    /// <summary>The series of <see cref="MixedMessage"/>: index i is <c>m{k="v&lt;i&gt;"}</c>; over 256, so indices take all three encodings.</summary>
    private const int MixedSeries = 300;

    /// <summary>
    /// A long message with every encoding a stock writer produces for each element, in random order: series index as
    /// fixint, uint8 or uint16; timestamp delta as fixint, negative fixint, int8, uint8, uint16, int16, uint32; value as
    /// float64, float32, integer or uint64. Optionally one bad element at point <paramref name="badAt"/>, whose byte
    /// offset is returned.
    /// </summary>
    private static (byte[] Bytes, List<(int Series, long Delta, double Value)> Points, long BadOffset) MixedMessage(int points, int badAt = -1, string bad = "")
    {
        long[] deltas = [0, 5, 127, -1, -32, -100, 200, 1_000, 65_535, -1_000, 70_000];
        var random = new Random(17);
        var expected = new List<(int, long, double)>();
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        long badOffset = -1;
        writer.WriteArrayHeader(5);
        writer.Write(1);
        writer.Write(T0);
        writer.WriteArrayHeader(2 + MixedSeries);
        writer.Write("m");
        writer.Write("k");
        for (int s = 0; s < MixedSeries; s++)
        {
            writer.Write("v" + s);
        }

        writer.WriteArrayHeader(MixedSeries);
        for (int s = 0; s < MixedSeries; s++)
        {
            writer.WriteArrayHeader(3);
            writer.Write(0);
            writer.Write(1);
            writer.Write(2 + s);
        }

        writer.WriteArrayHeader(3 * points);
        for (int i = 0; i < points; i++)
        {
            int series = random.Next(MixedSeries);
            long delta = deltas[random.Next(deltas.Length)];
            int k = random.Next(-1_000, 1_000);
            if (i == badAt && bad == "index")
            {
                writer.Flush();
                badOffset = buffer.WrittenCount;
                writer.Write(MixedSeries);
            }
            else
            {
                writer.Write(series);
            }

            if (i == badAt && bad == "delta")
            {
                writer.Flush();
                badOffset = buffer.WrittenCount;
                writer.Write(1.5);
            }
            else
            {
                writer.Write(delta);
            }

            if (i == badAt && bad == "value")
            {
                writer.Flush();
                badOffset = buffer.WrittenCount;
                writer.Write("1.0");
                continue;
            }

            double value;
            switch (random.Next(8))
            {
                case 0:
                    value = k * 0.5;
                    writer.Write((float)value);
                    break;
                case 1:
                    value = k;
                    writer.Write(k);
                    break;
                case 2:
                    value = (ulong)(k + 1_000);
                    writer.Write((ulong)(k + 1_000));
                    break;
                default:
                    value = k * 0.25;
                    writer.Write(value);
                    break;
            }

            expected.Add((series, delta, value));
        }

        writer.Flush();
        return (buffer.WrittenMemory.ToArray(), expected, badOffset);
    }

    [Fact]
    public async Task Decode_LongMessageMixingEveryEncoding_EveryPointExact()
    {
        // The fast loop reads the common encodings while 15 bytes are left; every other point, and the last few, are read
        // by the general one, and the fast loop resumes after each: every point must land in its series with its value.
        (byte[] message, List<(int Series, long Delta, double Value)> points, _) = MixedMessage(5_000);
        var sink = new RowSink();
        await using var pipeline = new MetricsPipeline(
            new MetricsPipelineOptions
            {
                ShardCount = 2,
                AllowedLateness = TimeSpan.FromHours(1),
                TimeProvider = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0)),
            },
            [sink]);
        pipeline.Start();
        var decoder = new PointBatchDecoder(pipeline.Registry);
        using (PointWriter writer = pipeline.CreateWriter("kafka:test/0"))
        {
            Assert.Equal(new PointDecodeResult(PointDecodeError.None, 5_000, 0, -1), decoder.Decode(message, writer));
        }

        await pipeline.StopAsync();
        Assert.Equal(0, pipeline.GetMetrics().Late);
        for (int s = 0; s < MixedSeries; s++)
        {
            double[] values = [.. points.Where(p => p.Series == s).Select(p => p.Value)];
            AggregateRow[] rows = [.. sink.Rows.Where(r => r.SeriesKey == "m{k=\"v" + s + "\"}")];
            Assert.Equal(values.Length, rows.Sum(r => r.Count));
            Assert.Equal(values.Sum(), rows.Sum(r => r.Sum));
            Assert.Equal(values.Min(), rows.Min(r => r.Min));
            Assert.Equal(values.Max(), rows.Max(r => r.Max));
        }

        // Every window a point's delta put it in: each delta's window holds exactly the points with it.
        foreach (IGrouping<long, (int Series, long Delta, double Value)> window in points.GroupBy(p => (T0 + p.Delta) / 10_000 * 10_000))
        {
            Assert.Equal(window.Count(), sink.Rows.Where(r => r.WindowStartUnixMs == window.Key).Sum(r => r.Count));
        }
    }

    [Theory]
    [InlineData("index", 2_500, PointDecodeError.IndexOutOfRange)]
    [InlineData("delta", 2_500, PointDecodeError.UnexpectedType)]
    [InlineData("value", 2_500, PointDecodeError.UnexpectedType)]
    [InlineData("index", 4_999, PointDecodeError.IndexOutOfRange)]
    [InlineData("value", 4_999, PointDecodeError.UnexpectedType)]
    public void Decode_BadElementInsideLongMessage_RefusedAtItsOffsetWritingNothing(string bad, int at, PointDecodeError error)
    {
        (byte[] message, _, long offset) = MixedMessage(5_000, at, bad);
        (PointDecodeResult result, PipelineMetrics metrics) = DecodeOne(message);
        Assert.Equal(new PointDecodeResult(error, 0, 0, offset), result);
        Assert.Equal(0, metrics.Offered);
    }

    [Fact]
    public void Encode_WritesTheDocumentedLayout()
    {
        var encoder = new PointBatchEncoder();
        int s = encoder.AddSeries("m", [new("k", "v")]);
        encoder.Add(s, 2.5, T0 + 7);
        encoder.Add(s, -1, T0);
        var buffer = new ArrayBufferWriter<byte>();
        encoder.WriteTo(buffer);
        object[] decoded = MessagePackSerializer.Deserialize<object[]>(buffer.WrittenMemory);
        Assert.Equal(5, decoded.Length);
        Assert.Equal(1, Convert.ToInt32(decoded[0], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(T0, Convert.ToInt64(decoded[1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(["m", "k", "v"], ((object[])decoded[2]).Cast<string>());
        Assert.Equal(
            [0L, 7L, 2.5, 0L, 0L, -1.0],
            ((object[])decoded[4]).Select(o => o is double d ? d : (object)Convert.ToInt64(o, System.Globalization.CultureInfo.InvariantCulture)));
    }
}
