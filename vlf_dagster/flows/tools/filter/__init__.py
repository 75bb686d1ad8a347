"""rwfilter's engine: select archive files, then partition flow records into pass and fail."""
