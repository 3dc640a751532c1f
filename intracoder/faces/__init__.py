"""Face extraction: detect -> dense landmarks -> align -> mask -> faceset on disk."""
