namespace Monitoring.Stream.Prometheus;

/// <summary>One snappy-compressed <c>WriteRequest</c>, ready to send, owned by the sink's queue.</summary>
/// <param name="Body">The compressed request body.</param>
/// <param name="Samples">Samples in it (one per time series).</param>
/// <param name="Lane">The lane that sends it; a series always maps to the same lane.</param>
/// <param name="Sequence">Position in the order requests were encoded, for dropping the oldest.</param>
internal sealed record EncodedRequest(byte[] Body, int Samples, int Lane, long Sequence)
{
    /// <summary>The window batch's delivery to complete when this request is sent or dropped, if the sink acknowledges on delivery.</summary>
    public BatchDelivery? Delivery { get; set; }
}
