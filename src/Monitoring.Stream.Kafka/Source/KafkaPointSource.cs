using System.Diagnostics;
using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Kafka.Source;

/// <summary>
/// Reads point messages (docs/wire-format.md) from a topic as one member of a consumer group and writes their
/// points into a pipeline: one writer per assigned partition, owned by the source's consumer thread.
/// </summary>
/// <remarks>
/// At-least-once: a partition's offset is committed only up to what the pipeline acknowledges. A message that
/// fails to decode goes to the dead-letter topic, and the source moves past it only once that write is
/// acknowledged. When the shards fill, the assigned partitions are paused until they drain; what waits in
/// between is bounded by librdkafka's prefetch (<see cref="KafkaPointSourceOptions.PrefetchKilobytes"/>).
/// </remarks>
public sealed class KafkaPointSource : IAsyncDisposable
{
    private readonly MetricsPipeline _pipeline;
    private readonly KafkaPointSourceOptions _options;
    private readonly PointBatchDecoder _decoder;
    private readonly PointMessageDeserializer _deserializer;
    private readonly Dictionary<TopicPartition, PartitionPositions> _partitions = [];
    private readonly Lock _metricsGate = new();
    private readonly Dictionary<PointDecodeError, long> _deadLettered = [];
    private readonly Dictionary<int, long> _committed = [];
    private readonly SortedDictionary<int, (long Low, long High)> _readRanges = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _assigned = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConsumerHealth _health = new();
    private readonly CommitSegments? _segments;

    /// <summary>
    /// Per partition this instance gave up after every sink acknowledged its points through an offset: if the
    /// partition comes back and that offset is read again (the revoke's commit failed), those messages are skipped.
    /// </summary>
    private readonly Dictionary<int, long> _deliveredThrough = [];
    private PointWriter? _assignmentHold;
    private IConsumer<byte[]?, PreparedPointMessage>? _consumer;
    private IProducer<byte[]?, byte[]?>? _deadLetters;
    private Thread? _thread;
    private Task _completion = Task.CompletedTask;
    private long _cuts, _cutTimeouts, _skippedMessages, _skippedPoints;
    /// <summary>
    /// Whether a cut has something to seal: a message read (or skipped) since the last sealed cut, or a sealed cut whose
    /// commit failed (<see cref="CommitSegments.TakeCommittable"/> dropped it). Without it, a partition whose only
    /// messages since the last sealed cut were skipped, or whose last segment's commit was refused, was never committed
    /// past them, not even by the stop.
    /// </summary>
    private bool _cutPending;
    private long _lastCut;
    private long _messages, _bytes, _points, _refused, _deadLetterFailures, _commits, _commitFailures, _pauses, _assignments, _revocations, _revokeTimeouts, _closeTimeouts;
    private int _assignedCount;
    private string? _lastCommitError;
    private bool _paused;
    private long _lastCommit;
    private long _lastPressureCheck;

    /// <summary>Creates a stopped source that will write into <paramref name="pipeline"/>.</summary>
    public KafkaPointSource(MetricsPipeline pipeline, KafkaPointSourceOptions options)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _pipeline = pipeline;
        _options = options;
        _decoder = new PointBatchDecoder(pipeline.Registry, options.Limits);
        _deserializer = new PointMessageDeserializer(_decoder);
        _segments = options.SegmentInterval > TimeSpan.Zero ? new CommitSegments() : null;

        // Until the group assigns partitions, a writer that never writes holds the pipeline's watermark (a source
        // that exists holds it with no progress, docs/event-time.md). Without it, the engine's clock (and its own
        // HTTP and health metrics) move the watermark to now - lateness before the first partition is assigned,
        // and a restart after a crash would find every uncommitted point it re-reads late: the commit lags the
        // clock by at least a window plus the lateness, so the backlog is always older than that.
        _assignmentHold = pipeline.CreateWriter($"kafka:{options.Topic}/assigning", BackpressureMode.Wait);
    }

    /// <summary>Completes once the source has been assigned partitions for the first time.</summary>
    public Task FirstAssignment => _assigned.Task;

    /// <summary>Completes when the consumer thread has ended (after <see cref="StopAsync"/>, or on a fatal error, which it carries).</summary>
    public Task Completion => _completion;

    /// <summary>Joins the group and starts consuming on a dedicated thread.</summary>
    public void Start()
    {
        if (_thread is not null)
        {
            throw new InvalidOperationException("The source has already been started.");
        }

        var consumerConfig = new ConsumerConfig
        {
            BootstrapServers = _options.BootstrapServers,
            GroupId = _options.GroupId,
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            QueuedMaxMessagesKbytes = _options.PrefetchKilobytes,
        };
        var producerConfig = new ProducerConfig
        {
            BootstrapServers = _options.BootstrapServers,
            EnableIdempotence = true,
            Acks = Acks.All,
            LingerMs = 0,
            MessageMaxBytes = Math.Max(_options.Limits.MaxMessageBytes, 1024 * 1024) + 65536,
        };
        foreach ((string key, string value) in _options.ClientSettings)
        {
            consumerConfig.Set(key, value);
            producerConfig.Set(key, value);
        }

        _consumer = new ConsumerBuilder<byte[]?, PreparedPointMessage>(consumerConfig)
            .SetValueDeserializer(_deserializer)
            .SetPartitionsAssignedHandler((_, partitions) => OnAssigned(partitions))
            .SetPartitionsRevokedHandler((_, partitions) => OnRevoked(partitions.Select(p => p.TopicPartition), commit: true))
            .SetPartitionsLostHandler((_, partitions) => OnRevoked(partitions.Select(p => p.TopicPartition), commit: false))
            .SetLogHandler(static (_, _) => { })
            .SetErrorHandler((_, error) => _health.OnError(error))
            .Build();
        _deadLetters = new ProducerBuilder<byte[]?, byte[]?>(producerConfig).SetLogHandler(static (_, _) => { }).Build();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _completion = done.Task;
        _thread = new Thread(() => Run(done)) { IsBackground = true, Name = "kafka-source:" + _options.Topic };
        _thread.Start();
    }

    /// <summary>
    /// Stops consuming, waits (bounded by <see cref="KafkaPointSourceOptions.RevokeTimeout"/>) for the
    /// partitions' points to be acknowledged, commits what is, and leaves the group.
    /// </summary>
    /// <remarks>
    /// Bounded: a consumer stuck inside librdkafka (a revoke under way, then its close) is waited for at most
    /// twice the revoke timeout plus the close timeout; past that the stop returns, counts it in
    /// <see cref="KafkaSourceMetrics.CloseTimeouts"/>, and leaves the consumer's thread to finish on its own.
    /// </remarks>
    public async Task StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        TimeSpan bound = (2 * _options.RevokeTimeout) + _options.CloseTimeout + TimeSpan.FromSeconds(10);
        try
        {
            await _completion.WaitAsync(bound).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            CountCloseTimeout();
        }
        catch (Exception e) when (e is KafkaException or InvalidOperationException or ArgumentException)
        {
            // The fatal error is on Completion for whoever watches it; stopping is done either way.
        }
    }

    private void CountCloseTimeout()
    {
        lock (_metricsGate)
        {
            _closeTimeouts++;
        }
    }

    /// <summary>
    /// The header text of <see cref="Sink.AggregateHeaders.SourceOffsets"/> for <paramref name="batch"/>, written
    /// now and not yet acknowledged: per partition, the offsets its points can come from
    /// (<see cref="Sink.SourceOffsetRange"/>). With segments (<see cref="KafkaPointSourceOptions.SegmentInterval"/>),
    /// those of the batch's segment, found by its shard and sequence; without, every offset this instance read
    /// that is not committed. Thread-safe; for <see cref="Sink.KafkaWindowSinkOptions.SourceOffsets"/>.
    /// </summary>
    public string DescribeSourceOffsets(Monitoring.Stream.Sinks.WindowBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        lock (_metricsGate)
        {
            IEnumerable<KeyValuePair<int, (long Low, long High)>> ranges = _segments is null ? _readRanges : _segments.RangesOf(batch.Shard, batch.Sequence);
            return Sink.SourceOffsetRange.Format(ranges.Select(r => new Sink.SourceOffsetRange(_options.Topic, r.Key, r.Value.Low, r.Value.High)));
        }
    }

    /// <summary>A snapshot of the source's counters.</summary>
    public KafkaSourceMetrics GetMetrics()
    {
        (long errors, string? lastError, TimeSpan? sinceError, Dictionary<int, TimeSpan> sinceMessage) = _health.Snapshot();
        lock (_metricsGate)
        {
            return new KafkaSourceMetrics
            {
                Messages = _messages,
                Bytes = _bytes,
                Points = _points,
                PointsRefused = _refused,
                DeadLettered = new Dictionary<PointDecodeError, long>(_deadLettered),
                DeadLetterFailures = _deadLetterFailures,
                Commits = _commits,
                Cuts = _cuts,
                CutTimeouts = _cutTimeouts,
                SkippedMessages = _skippedMessages,
                SkippedPoints = _skippedPoints,
                CommitFailures = _commitFailures,
                LastCommitError = _lastCommitError,
                Pauses = _pauses,
                Paused = _paused,
                Assignments = _assignments,
                Revocations = _revocations,
                RevokeTimeouts = _revokeTimeouts,
                CloseTimeouts = _closeTimeouts,
                AssignedPartitions = _assignedCount,
                CommittedOffsets = new Dictionary<int, long>(_committed),
                ConsumerErrors = errors,
                LastConsumerError = lastError,
                SinceLastConsumerError = sinceError,
                SinceLastMessage = sinceMessage,
            };
        }
    }

    private void Run(TaskCompletionSource done)
    {
        IConsumer<byte[]?, PreparedPointMessage>? consumer = _consumer!;
        try
        {
            consumer.Subscribe(_options.Topic);
            _lastCommit = Stopwatch.GetTimestamp();
            _lastCut = _lastCommit;
            while (!_stop.IsCancellationRequested)
            {
                ConsumeResult<byte[]?, PreparedPointMessage>? result = consumer.Consume(TimeSpan.FromMilliseconds(50));
                if (result is not null && !result.IsPartitionEOF)
                {
                    Handle(consumer, result);
                }
                else
                {
                    // Idle: hand what the writers buffer to the shards, so windows and acknowledgements move on.
                    foreach (PartitionPositions p in _partitions.Values)
                    {
                        p.Writer.Flush();
                    }
                }

                CheckBackpressure(consumer);
                if (_segments is not null && Stopwatch.GetElapsedTime(_lastCut) >= _options.SegmentInterval)
                {
                    Cut();
                    _lastCut = Stopwatch.GetTimestamp();
                }

                if (Stopwatch.GetElapsedTime(_lastCommit) >= _options.CommitInterval)
                {
                    CommitAcknowledged(consumer, [.. _partitions]);
                    _lastCommit = Stopwatch.GetTimestamp();
                }
            }

            OnRevoked([.. _partitions.Keys], commit: true);
            LeaveAssignment(consumer, _options.CloseTimeout);
            if (!CloseWithin(consumer, _options.CloseTimeout))
            {
                // librdkafka's close (leaving the group) can block during a rebalance: its handle is left
                // open rather than disposed, since disposing would block the same way.
                CountCloseTimeout();
                consumer = null;
            }

            done.SetResult();
        }
        catch (Exception e)
        {
            // Whatever ends the thread ends the source: Completion carries it, and StopAsync does not wait for ever.
            foreach (PartitionPositions p in _partitions.Values)
            {
                p.Writer.Dispose();
            }

            _partitions.Clear();
            done.SetException(e);
        }
        finally
        {
            _assignmentHold?.Dispose();
            _assignmentHold = null;
            consumer?.Dispose();
            _deadLetters!.Flush(TimeSpan.FromSeconds(5));
            _deadLetters.Dispose();
        }
    }

    /// <summary>
    /// Unsubscribes and polls until the assignment is empty (at most <paramref name="timeout"/>), so the close
    /// that follows has no partitions to revoke: a revoke callback run by librdkafka's close can block for ever
    /// (the client asks for the rebalance protocol, which close no longer answers; librdkafka issue 4041).
    /// Messages the polls return are not handled: they are past the committed offsets and are read again by
    /// the partitions' next owner.
    /// </summary>
    private static void LeaveAssignment(IConsumer<byte[]?, PreparedPointMessage> consumer, TimeSpan timeout)
    {
        try
        {
            consumer.Unsubscribe();
            long started = Stopwatch.GetTimestamp();
            while (consumer.Assignment.Count > 0 && Stopwatch.GetElapsedTime(started) < timeout)
            {
                _ = consumer.Consume(TimeSpan.FromMilliseconds(20));
            }
        }
        catch (KafkaException)
        {
            // Closing goes on regardless; it is bounded by its own timeout.
        }
    }

    /// <summary>Closes the consumer (final revoke callback, leave the group) on a helper thread, waiting at most <paramref name="timeout"/>.</summary>
    private static bool CloseWithin(IConsumer<byte[]?, PreparedPointMessage> consumer, TimeSpan timeout)
    {
        var closing = new Thread(consumer.Close) { IsBackground = true, Name = "kafka-source-close" };
        closing.Start();
        return closing.Join(timeout);
    }

    private void Handle(IConsumer<byte[]?, PreparedPointMessage> consumer, ConsumeResult<byte[]?, PreparedPointMessage> result)
    {
        if (!_partitions.TryGetValue(result.TopicPartition, out PartitionPositions? partition))
        {
            return;
        }

        _health.OnMessage(result.Partition.Value);
        PreparedPointMessage prepared = result.Message.Value;
        if (_deliveredThrough.TryGetValue(result.Partition.Value, out long delivered))
        {
            if (result.Offset.Value <= delivered)
            {
                // Read again because this instance's own commit at the revoke failed: every sink has these points.
                lock (_metricsGate)
                {
                    _messages++;
                    _bytes += prepared.Length;
                    _skippedMessages++;
                    _skippedPoints += prepared.Result.Succeeded ? prepared.Result.Points : 0;

                    // The next cut moves the commit past them, even if nothing else is read.
                    _cutPending = true;
                }

                partition.Checkpoint(result.Offset.Value);
                return;
            }

            _deliveredThrough.Remove(result.Partition.Value);
        }

        lock (_metricsGate)
        {
            // Before the message's points are written: a batch written from now on may hold them.
            int p = result.Partition.Value;
            long offset = result.Offset.Value;
            if (_segments is null)
            {
                _readRanges[p] = _readRanges.TryGetValue(p, out (long Low, long High) range) ? (Math.Min(range.Low, offset), Math.Max(range.High, offset)) : (offset, offset);
            }
            else
            {
                _segments.OnRead(p, offset);
                _cutPending = true;
            }
        }

        // The message was checked and its series resolved by the deserializer, inside Consume; its points wait in the decoder.
        PointDecodeResult decoded = prepared.Result;
        if (decoded.Succeeded)
        {
            decoded = decoded with { Refused = _decoder.WritePrepared(partition.Writer, []) };
        }

        lock (_metricsGate)
        {
            _messages++;
            _bytes += prepared.Length;
            _points += decoded.Points;
            _refused += decoded.Refused;
        }

        if (!decoded.Succeeded && !DeadLetter(result, prepared.Raw ?? [], decoded))
        {
            // Not moved past: read the message again after the pause of the retry.
            consumer.Seek(result.TopicPartitionOffset);
            return;
        }

        partition.Checkpoint(result.Offset.Value);
    }

    private bool DeadLetter(ConsumeResult<byte[]?, PreparedPointMessage> result, byte[] value, PointDecodeResult decoded)
    {
        var headers = new Headers
        {
            { DeadLetterHeaders.SourceTopic, Encoding.UTF8.GetBytes(result.Topic) },
            { DeadLetterHeaders.SourcePartition, Encoding.UTF8.GetBytes(result.Partition.Value.ToString(CultureInfo.InvariantCulture)) },
            { DeadLetterHeaders.SourceOffset, Encoding.UTF8.GetBytes(result.Offset.Value.ToString(CultureInfo.InvariantCulture)) },
            { DeadLetterHeaders.Reason, Encoding.UTF8.GetBytes(decoded.Error.ToString()) },
            { DeadLetterHeaders.Detail, Encoding.UTF8.GetBytes(decoded.Describe()) },
        };
        var message = new Message<byte[]?, byte[]?> { Key = result.Message.Key, Value = value, Headers = headers };
        try
        {
            // Rare by nature, so one awaited write per bad message: the offset may not move before it is acknowledged.
            Task<DeliveryResult<byte[]?, byte[]?>> delivery = _deadLetters!.ProduceAsync(_options.DeadLetterTopicOrDefault, message);
            if (delivery.Wait(_options.DeadLetterTimeout) && delivery.Result.Status == PersistenceStatus.Persisted)
            {
                lock (_metricsGate)
                {
                    _deadLettered[decoded.Error] = _deadLettered.GetValueOrDefault(decoded.Error) + 1;
                }

                return true;
            }
        }
        catch (AggregateException e) when (e.InnerException is ProduceException<byte[]?, byte[]?>)
        {
        }
        catch (ProduceException<byte[]?, byte[]?>)
        {
        }

        lock (_metricsGate)
        {
            _deadLetterFailures++;
        }

        Thread.Sleep(100);
        return false;
    }

    private void CheckBackpressure(IConsumer<byte[]?, PreparedPointMessage> consumer)
    {
        if (_partitions.Count == 0 || Stopwatch.GetElapsedTime(_lastPressureCheck) < _options.BackpressureCheckInterval)
        {
            return;
        }

        _lastPressureCheck = Stopwatch.GetTimestamp();
        // The fullest shard queue's fill alone, not a whole metrics snapshot (which allocated on every check).
        double fill = _pipeline.ShardQueueFill;
        if (!_paused && fill >= _options.PauseAtQueueFill)
        {
            consumer.Pause(_partitions.Keys);
            SetPaused(true);
        }
        else if (_paused && fill < _options.ResumeBelowQueueFill)
        {
            consumer.Resume(_partitions.Keys);
            SetPaused(false);
        }
    }

    private void SetPaused(bool paused)
    {
        lock (_metricsGate)
        {
            _paused = paused;
            if (paused)
            {
                _pauses++;
            }
        }
    }

    private void OnAssigned(List<TopicPartition> partitions)
    {
        foreach (TopicPartition tp in partitions)
        {
            if (!_partitions.ContainsKey(tp))
            {
                PointWriter writer = _pipeline.CreateWriter($"kafka:{tp.Topic}/{tp.Partition.Value}", BackpressureMode.Wait);
                _partitions.Add(tp, new PartitionPositions(writer));
            }
        }

        lock (_metricsGate)
        {
            _assignments++;
            _assignedCount = _partitions.Count;
        }

        if (_paused)
        {
            // A fresh assignment starts unpaused in librdkafka; keep the whole set consistent.
            SetPaused(false);
        }

        if (_assignmentHold is not null && partitions.Count > 0)
        {
            // The partitions' writers exist now and hold the watermark themselves until they write.
            _assignmentHold.Dispose();
            _assignmentHold = null;
        }

        _assigned.TrySetResult();
    }

    private void OnRevoked(IEnumerable<TopicPartition> revoked, bool commit)
    {
        List<KeyValuePair<TopicPartition, PartitionPositions>> leaving = [.. revoked
            .Where(_partitions.ContainsKey)
            .Select(tp => new KeyValuePair<TopicPartition, PartitionPositions>(tp, _partitions[tp]))];
        if (leaving.Count == 0)
        {
            return;
        }

        List<PartitionPositions> positions = [.. leaving.Select(p => p.Value)];
        foreach (PartitionPositions p in positions)
        {
            p.Writer.Flush();
        }

        if (commit)
        {
            // Hand the open windows over (close them now), then commit as far as the sinks acknowledged:
            // all of it, unless a sink is slower than the revoke timeout; the next owner re-reads the rest.
            // With segments the cut covers every partition held (a segment is committed whole: see CommitSegments).
            bool acknowledged = _segments is null
                ? PartitionPositions.CloseAndWaitForAcknowledged(positions, _options.RevokeTimeout)
                : Cut() && PartitionPositions.WaitForAcknowledged([.. _partitions.Values], _options.RevokeTimeout);
            if (!acknowledged)
            {
                lock (_metricsGate)
                {
                    _revokeTimeouts++;
                }
            }

            CommitAcknowledged(_consumer!, leaving);
            foreach ((TopicPartition tp, PartitionPositions p) in leaving)
            {
                if (p.Checkpointed >= 0 && p.AcknowledgedPosition >= p.Checkpointed)
                {
                    // Should the commit have failed and the partition come back here, these are not aggregated twice.
                    _deliveredThrough[tp.Partition.Value] = p.Checkpointed;
                }
            }
        }

        foreach ((TopicPartition tp, PartitionPositions p) in leaving)
        {
            p.Writer.Dispose();
            _partitions.Remove(tp);
        }

        lock (_metricsGate)
        {
            foreach ((TopicPartition tp, _) in leaving)
            {
                _readRanges.Remove(tp.Partition.Value);
                _segments?.Forget(tp.Partition.Value);
            }

            _revocations++;
            _assignedCount = _partitions.Count;
        }
    }

    /// <summary>
    /// Cuts every partition held into a new segment: emits now the open windows holding their points and seals
    /// the segment with the shards' last sequences. False when the shards did not emit within the revoke timeout
    /// (the segment then goes on: its commit waits for a later cut).
    /// </summary>
    private bool Cut()
    {
        var positions = new Dictionary<int, long>();
        foreach ((TopicPartition tp, PartitionPositions p) in _partitions)
        {
            if (p.Checkpointed >= 0)
            {
                positions[tp.Partition.Value] = p.Checkpointed + 1;
            }
        }

        bool read;
        lock (_metricsGate)
        {
            read = _cutPending;
        }

        if (positions.Count == 0 || !read)
        {
            // Nothing read (or skipped, or left uncommitted) since the last cut: the last segment's batches are all there is.
            return true;
        }

        long[]? emittedThrough = PartitionPositions.CloseOpenWindows([.. _partitions.Values], _options.RevokeTimeout);
        lock (_metricsGate)
        {
            if (emittedThrough is null)
            {
                _cutTimeouts++;
                return false;
            }

            _segments!.Seal(positions, emittedThrough);
            _cutPending = false;
            _cuts++;
        }

        return true;
    }

    private void CommitAcknowledged(IConsumer<byte[]?, PreparedPointMessage> consumer, List<KeyValuePair<TopicPartition, PartitionPositions>> partitions)
    {
        if (_segments is not null)
        {
            CommitSegment(consumer);
            return;
        }

        List<TopicPartitionOffset> offsets = [];
        foreach ((TopicPartition tp, PartitionPositions p) in partitions)
        {
            long next = p.AcknowledgedPosition + 1;
            if (next > 0)
            {
                offsets.Add(new TopicPartitionOffset(tp, next));
            }
        }

        _ = Commit(consumer, offsets);
    }

    /// <summary>Commits the cut of the newest segment every held partition of which is acknowledged, for every partition held.</summary>
    private void CommitSegment(IConsumer<byte[]?, PreparedPointMessage> consumer)
    {
        var acknowledged = new Dictionary<int, long>();
        foreach ((TopicPartition tp, PartitionPositions p) in _partitions)
        {
            acknowledged[tp.Partition.Value] = p.AcknowledgedPosition;
        }

        IReadOnlyDictionary<int, long>? cut;
        lock (_metricsGate)
        {
            cut = _segments!.TakeCommittable(p => acknowledged.TryGetValue(p, out long acked) ? acked : null);
        }

        if (cut is null)
        {
            return;
        }

        List<TopicPartitionOffset> offsets = [];
        foreach ((TopicPartition tp, _) in _partitions)
        {
            if (cut.TryGetValue(tp.Partition.Value, out long position))
            {
                offsets.Add(new TopicPartitionOffset(tp, position));
            }
        }

        if (!Commit(consumer, offsets))
        {
            // The segment was taken: seal the same positions again at the next cut, or nothing commits them
            // until more is read (not even the stop).
            lock (_metricsGate)
            {
                _cutPending = true;
            }
        }
    }

    /// <summary>Commits those of <paramref name="offsets"/> above what this instance last committed; false when the commit failed.</summary>
    private bool Commit(IConsumer<byte[]?, PreparedPointMessage> consumer, List<TopicPartitionOffset> offsets)
    {
        lock (_metricsGate)
        {
            offsets.RemoveAll(o => o.Offset.Value <= _committed.GetValueOrDefault(o.Partition.Value, -1));
        }

        if (offsets.Count == 0)
        {
            return true;
        }

        try
        {
            consumer.Commit(offsets);
            lock (_metricsGate)
            {
                _commits++;
                foreach (TopicPartitionOffset o in offsets)
                {
                    _committed[o.Partition.Value] = o.Offset.Value;
                    if (_readRanges.TryGetValue(o.Partition.Value, out (long Low, long High) range))
                    {
                        // Every point below a committed offset is in acknowledged batches: none is in a batch still to be written.
                        _readRanges[o.Partition.Value] = (Math.Max(range.Low, o.Offset.Value), range.High);
                    }
                }
            }

            return true;
        }
        catch (KafkaException e)
        {
            lock (_metricsGate)
            {
                _commitFailures++;
                _lastCommitError = e.Error.ToString();
            }

            return false;
        }
    }

    /// <summary>Stops the source (see <see cref="StopAsync"/>) and releases it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_thread is not null)
        {
            await StopAsync().ConfigureAwait(false);
        }
        else
        {
            _assignmentHold?.Dispose();
            _assignmentHold = null;
        }

        _stop.Dispose();
        _deserializer.Dispose();
    }
}
