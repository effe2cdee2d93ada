namespace Monitoring.Stream.Kafka.WireFormat;

/// <summary>One point of a message after parsing and before it is written: series index, timestamp, value.</summary>
internal struct DecodedPoint
{
    public int Series;
    public long TimestampUnixMs;
    public double Value;
}
